/**
 * HTTP source benchmark (one machine, loopback, page cache warm): convert an image served over
 * HTTP to a sparse raw file with diskpipe (range requests through the block cache, 4 readers)
 * and with `qemu-img convert` reading the same URL through qemu's curl driver. A plain GET of
 * the whole file gives the wire speed. The server runs in its own process. Images: 512 MiB
 * virtual with 256 MiB of data, raw and (when the qcow2 reader is registered) qcow2.
 * Each figure is the best of three runs (the machine is shared). qemu-img runs with `-m 1`:
 * with more coroutines the curl driver of qemu 7.2 stalls part-way on this server.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatDriver } from '../src/formats/registry.js';
import type { Image } from '../src/image/types.js';
import { LocalFile } from '../src/io/file.js';
import { openImage } from '../src/open.js';

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
const ZERO = Buffer.alloc(CHUNK);

export interface HttpFigure {
  image: string;
  diskpipeSeconds: number;
  qemuImgSeconds: number;
  plainGetSeconds: number;
  dataMiB: number;
}

function makeRaw(path: string): void {
  const fd = openSync(path, 'w');
  const data = Buffer.alloc(32 * MiB);
  randomFillSync(data, 0, 16 * MiB);
  data.fill('diskpipe http benchmark, some text to compress\n', 16 * MiB);
  try {
    ftruncateSync(fd, 512 * MiB);
    for (let i = 0; i < 8; i++) writeSync(fd, data, 0, data.length, i * 64 * MiB);
  } finally {
    closeSync(fd);
  }
}

/** Copies an image to a sparse raw file: data extents only, 4 readers, zero chunks skipped. */
async function copyToRaw(image: Image, dest: string): Promise<void> {
  const out = await LocalFile.open(dest, 'w+');
  await out.truncate(image.size);
  const jobs: [number, number][] = [];
  for await (const e of image.extents()) {
    if (e.zero) continue;
    for (let at = e.offset; at < e.offset + e.length; at += CHUNK)
      jobs.push([at, Math.min(CHUNK, e.offset + e.length - at)]);
  }
  const worker = async () => {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let job = jobs.shift(); job; job = jobs.shift()) {
      const view = buf.subarray(0, job[1]);
      await image.read(view, job[0]);
      if (!view.equals(ZERO.subarray(0, view.length))) await out.write(view, job[0]);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  await out.close();
}

function plainGet(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        res.on('data', () => {});
        res.on('end', resolve);
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

async function best(fn: () => Promise<void>): Promise<number> {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await fn();
    min = Math.min(min, (performance.now() - t) / 1000);
  }
  return min;
}

export async function startServer(files: Record<string, string>) {
  const script = new URL('./http-serve.js', import.meta.url).pathname;
  const args = Object.entries(files).map(([k, v]) => `${k}=${v}`);
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const base = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
    child.once('error', reject);
  });
  return { base, stop: () => child.stdin.end() };
}

export async function run(): Promise<HttpFigure[]> {
  const dir = mkdtempSync(join(tmpdir(), 'diskpipe-bench-http-'));
  const figures: HttpFigure[] = [];
  try {
    const raw = join(dir, 'disk.raw');
    makeRaw(raw);
    const files: Record<string, string> = { '/disk.raw': raw };
    const formats = ['raw'];
    if (formatDriver('qcow2')) {
      execFileSync('qemu-img', [
        'convert',
        '-f',
        'raw',
        '-O',
        'qcow2',
        raw,
        join(dir, 'disk.qcow2'),
      ]);
      files['/disk.qcow2'] = join(dir, 'disk.qcow2');
      formats.push('qcow2');
    }
    const server = await startServer(files);
    try {
      for (const fmt of formats) {
        const url = `${server.base}/disk.${fmt}`;
        const ours = join(dir, `ours.${fmt}.raw`);
        const theirs = join(dir, `qemu.${fmt}.raw`);
        const diskpipeSeconds = await best(async () => {
          const image = await openImage(url);
          try {
            await copyToRaw(image, ours);
          } finally {
            await image.close();
          }
        });
        const qemuImgSeconds = await best(async () => {
          // -m 1: with more coroutines (default 8; 4 too, intermittently) qemu 7.2's curl
          // driver stalls for good part-way (every request answered, no new one sent).
          execFileSync('qemu-img', ['convert', '-m', '1', '-f', fmt, '-O', 'raw', url, theirs], {
            timeout: 300_000,
          });
        });
        execFileSync('cmp', [ours, theirs]);
        const plainGetSeconds = await best(() => plainGet(url));
        figures.push({
          image: fmt,
          diskpipeSeconds,
          qemuImgSeconds,
          plainGetSeconds,
          dataMiB: 256,
        });
      }
    } finally {
      server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const f of figures) {
    const rate = (s: number) => `${(f.dataMiB / s).toFixed(0)} MiB/s`;
    process.stdout.write(
      `http ${f.image}: diskpipe ${f.diskpipeSeconds.toFixed(2)} s (${rate(f.diskpipeSeconds)}), ` +
        `qemu-img convert (curl) ${f.qemuImgSeconds.toFixed(2)} s (${rate(f.qemuImgSeconds)}), ` +
        `ratio ${(f.qemuImgSeconds / f.diskpipeSeconds).toFixed(2)}x; ` +
        `plain GET of the file ${f.plainGetSeconds.toFixed(2)} s\n`,
    );
  }
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
