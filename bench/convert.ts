/**
 * convert -O raw: diskpipe against qemu-img convert -m 16 -W (and -t none) on each input.
 * The note has user and system CPU apart (system time on this VM depends on which free pages
 * the kernel hands out, not on the program) and the allocated bytes of both outputs.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchImages } from './images.js';
import { alternate, cpuSplit, diskpipe, type Row, remove, summary, timed } from './util.js';

function allocated(path: string): number {
  return statSync(path).blocks * 512;
}

export function benchConvert(img: BenchImages, reps: number, inputs: [string, string][]): Row[] {
  const rows: Row[] = [];
  const out = join(img.dir, 'convert-out.raw');
  for (const [name, input] of inputs) {
    // Correctness first (once): the output must equal the raw original, and be as sparse as
    // qemu-img's.
    diskpipe(['convert', '-O', 'raw', input, out]);
    timed('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img.raw, out]);
    const oursAllocated = allocated(out);
    remove(out);
    timed('qemu-img', ['convert', '-m', '16', '-W', '-O', 'raw', input, out]);
    const qemuAllocated = allocated(out);
    remove(out);
    const extra: Record<string, () => ReturnType<typeof diskpipe>> = {};
    if (name === 'raw') {
      // The read/write path (finding zero blocks in data), for comparison.
      extra.readPath = () => {
        const t = diskpipe(['convert', '-O', 'raw', '--no-copy-range', input, out]);
        remove(out);
        return t;
      };
    }
    const runs = alternate(reps, {
      ...extra,
      diskpipe: () => {
        const t = diskpipe(['convert', '-O', 'raw', input, out]);
        remove(out);
        return t;
      },
      qemu: () => {
        const t = timed('qemu-img', ['convert', '-m', '16', '-W', '-O', 'raw', input, out]);
        remove(out);
        return t;
      },
      qemuDirect: () => {
        const t = timed('qemu-img', [
          'convert',
          '-m',
          '16',
          '-W',
          '-t',
          'none',
          '-O',
          'raw',
          input,
          out,
        ]);
        remove(out);
        return t;
      },
    });
    const ours = summary(runs.diskpipe!);
    const qemu = summary(runs.qemu!);
    const direct = summary(runs.qemuDirect!);
    const best = direct.seconds < qemu.seconds ? direct : qemu;
    const readPath = runs.readPath ? summary(runs.readPath) : undefined;
    rows.push({
      bench: 'convert -O raw',
      input: name,
      ours: ours.seconds,
      peer: best.seconds,
      oursMedian: ours.median,
      peerMedian: best.median,
      peerName: best === direct ? 'qemu-img -m 16 -W -t none' : 'qemu-img -m 16 -W',
      rssMiB: ours.rssMiB,
      note: `${readPath ? `--no-copy-range ${readPath.seconds.toFixed(2)}s; ` : ''}diskpipe CPU ${ours.cpuPercent}% ${cpuSplit(ours)}; qemu ${qemu.seconds.toFixed(2)}s CPU ${qemu.cpuPercent}% ${cpuSplit(qemu)}, -t none ${direct.seconds.toFixed(2)}s ${cpuSplit(direct)}; qemu RSS ${qemu.rssMiB?.toFixed(0)} MiB; allocated ${oursAllocated} vs qemu ${qemuAllocated} bytes`,
    });
  }
  return rows;
}
