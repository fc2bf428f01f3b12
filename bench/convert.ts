/** convert -O raw: diskpipe against qemu-img convert -m 16 -W (and -t none) on each input. */
import { join } from 'node:path';
import type { BenchImages } from './images.js';
import { alternate, diskpipe, type Row, remove, summary, timed } from './util.js';

export function benchConvert(img: BenchImages, reps: number, inputs: [string, string][]): Row[] {
  const rows: Row[] = [];
  const out = join(img.dir, 'convert-out.raw');
  for (const [name, input] of inputs) {
    // Correctness first (once): the output must equal the raw original.
    diskpipe(['convert', '-O', 'raw', input, out]);
    timed('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img.raw, out]);
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
      note: `${readPath ? `--no-copy-range ${readPath.seconds.toFixed(2)}s; ` : ''}diskpipe CPU ${ours.cpuPercent}%; qemu ${qemu.seconds.toFixed(2)}s CPU ${qemu.cpuPercent}%, -t none ${direct.seconds.toFixed(2)}s; qemu RSS ${qemu.rssMiB?.toFixed(0)} MiB`,
    });
  }
  return rows;
}
