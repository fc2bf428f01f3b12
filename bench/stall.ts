/**
 * Event-loop stalls: the longest time the event loop was blocked during an in-process clone
 * and convert (perf_hooks.monitorEventLoopDelay). Native calls are bounded to 16 MiB each, so
 * a stall should stay in the tens of milliseconds whatever the image size.
 */
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openImage } from '../src/open.js';
import { cloneFile } from '../src/ops/clone.js';
import { convertImage } from '../src/ops/convert.js';
import type { BenchImages } from './images.js';
import { remove } from './util.js';

interface Stall {
  what: string;
  seconds: number;
  maxStallMs: number;
  p99Ms: number;
}

async function measure(what: string, run: () => Promise<unknown>): Promise<Stall> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  const start = performance.now();
  h.enable();
  await run();
  h.disable();
  const seconds = (performance.now() - start) / 1000;
  // The histogram counts the delay beyond the 10 ms timer resolution.
  return { what, seconds, maxStallMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6 };
}

async function convert(src: string, dst: string, opts: Parameters<typeof convertImage>[2]) {
  const image = await openImage(src);
  try {
    await convertImage(image, dst, opts);
  } finally {
    await image.close();
  }
}

export async function benchStall(img: BenchImages): Promise<void> {
  const out = join(img.dir, 'stall-out');
  const rows: Stall[] = [
    await measure('clone (sparse copy, copy_file_range)', () =>
      cloneFile(img.raw, out, { strategy: 'sparse-copy' }),
    ),
    await measure('convert raw → raw --copy-range', () =>
      convert(img.raw, out, { copyRange: true }),
    ),
    await measure('convert raw → raw', () => convert(img.raw, out, {})),
    await measure('convert qcow2 → qcow2', () => convert(img.qcow2, out, { format: 'qcow2' })),
  ];
  remove(out);
  console.log('what                                    seconds  longest stall  p99 delay');
  for (const r of rows) {
    console.log(
      `${r.what.padEnd(40)}${r.seconds.toFixed(2).padStart(7)}  ${r.maxStallMs.toFixed(1).padStart(10)} ms  ${r.p99Ms.toFixed(1).padStart(6)} ms`,
    );
  }
}
