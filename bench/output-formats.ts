/**
 * convert of the raw bench image into each output format diskpipe writes (vmdk, streamOptimized
 * vmdk, vhdx, vpc, vdi) against `qemu-img convert -m 16 -W` with the same -O/-o. Outputs are
 * compared with the source once, and their allocated sizes are printed next to qemu-img's.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchImages } from './images.js';
import { alternate, diskpipe, MiB, type Row, remove, summary, timed } from './util.js';

const CASES: [string, string[]][] = [
  ['vmdk', ['-O', 'vmdk']],
  ['vmdk streamOptimized', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
  ['vhdx', ['-O', 'vhdx']],
  ['vpc', ['-O', 'vpc']],
  ['vdi', ['-O', 'vdi']],
];

function allocatedMiB(path: string): string {
  return ((statSync(path).blocks * 512) / MiB).toFixed(1);
}

export function benchOutputFormats(img: BenchImages, reps: number): Row[] {
  const rows: Row[] = [];
  for (const [name, args] of CASES) {
    const ext = args[1]!;
    const ours = join(img.dir, `out-ours.${ext}`);
    const theirs = join(img.dir, `out-qemu.${ext}`);
    const runs = alternate(reps, {
      diskpipe: () => {
        remove(ours);
        return diskpipe(['convert', ...args, img.raw, ours]);
      },
      qemu: () => {
        remove(theirs);
        return timed('qemu-img', [
          'convert',
          '-m',
          '16',
          '-W',
          '-f',
          'raw',
          ...args,
          img.raw,
          theirs,
        ]);
      },
    });
    timed('qemu-img', ['compare', '-q', '-f', 'raw', img.raw, ours]);
    console.log(
      `${name}: allocated ${allocatedMiB(ours)} MiB, qemu-img ${allocatedMiB(theirs)} MiB`,
    );
    remove(ours);
    remove(theirs);
    const a = summary(runs.diskpipe!);
    const b = summary(runs.qemu!);
    rows.push({
      bench: 'convert raw ->',
      input: name,
      ours: a.seconds,
      peer: b.seconds,
      oursMedian: a.median,
      peerMedian: b.median,
      peerName: 'qemu-img convert -m 16 -W',
      rssMiB: a.rssMiB,
    });
  }
  return rows;
}
