/**
 * convert of the formats VMware and Hyper-V users bring (streamOptimized VMDK, as inside OVA
 * files, and VHDX) to raw, against `qemu-img convert -m 16 -W` on the same images.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchImages } from './images.js';
import { alternate, diskpipe, type Row, remove, summary, timed } from './util.js';

export function benchFormats(img: BenchImages, reps: number): Row[] {
  const inputs: [string, string, string[]][] = [
    [
      'vmdk streamOptimized',
      join(img.dir, 'bench.stream.vmdk'),
      ['-O', 'vmdk', '-o', 'subformat=streamOptimized'],
    ],
    ['vhdx dynamic', join(img.dir, 'bench.vhdx'), ['-O', 'vhdx']],
  ];
  const rows: Row[] = [];
  for (const [name, path, make] of inputs) {
    if (!existsSync(path)) timed('qemu-img', ['convert', '-f', 'raw', ...make, img.raw, path]);
    const ours = join(img.dir, 'fmt-ours.raw');
    const theirs = join(img.dir, 'fmt-qemu.raw');
    const runs = alternate(reps, {
      diskpipe: () => {
        remove(ours);
        return diskpipe(['convert', '-O', 'raw', path, ours]);
      },
      qemu: () => {
        remove(theirs);
        return timed('qemu-img', ['convert', '-m', '16', '-W', '-O', 'raw', path, theirs]);
      },
    });
    timed('qemu-img', ['compare', '-q', ours, theirs]);
    remove(ours);
    remove(theirs);
    const a = summary(runs.diskpipe!);
    const b = summary(runs.qemu!);
    rows.push({
      bench: 'convert -O raw',
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
