/** compare: diskpipe against qemu-img compare on pairs holding the same content. */
import { join } from 'node:path';
import type { BenchImages } from './images.js';
import { alternate, cpuSplit, diskpipe, type Row, remove, summary, timed } from './util.js';

export function benchCompare(
  img: BenchImages,
  reps: number,
  pairs: [string, string, string][],
): Row[] {
  const rows: Row[] = [];
  const copy = join(img.dir, 'compare-copy.raw');
  // A second raw file with the same content but its own blocks.
  timed('cp', ['--sparse=always', '--reflink=never', img.raw, copy]);
  try {
    for (const [name, a0, b0] of pairs) {
      const a = a0 === 'copy' ? copy : a0;
      const b = b0 === 'copy' ? copy : b0;
      const check = diskpipe(['compare', a, b], [0, 1]);
      if (!check.stdout.includes('identical')) throw new Error(`${name}: ${check.stdout}`);
      const runs = alternate(reps, {
        diskpipe: () => diskpipe(['compare', a, b]),
        qemu: () => timed('qemu-img', ['compare', a, b]),
      });
      const ours = summary(runs.diskpipe!);
      const qemu = summary(runs.qemu!);
      rows.push({
        bench: 'compare',
        input: name,
        ours: ours.seconds,
        peer: qemu.seconds,
        oursMedian: ours.median,
        peerMedian: qemu.median,
        peerName: 'qemu-img compare',
        rssMiB: ours.rssMiB,
        note: `diskpipe ${cpuSplit(ours)}; qemu ${cpuSplit(qemu)}, RSS ${qemu.rssMiB?.toFixed(0)} MiB`,
      });
    }
  } finally {
    remove(copy);
  }
  return rows;
}
