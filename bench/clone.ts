/** clone: diskpipe against cp --reflink=auto --sparse=always (on the bench directory's fs). */
import { join } from 'node:path';
import type { BenchImages } from './images.js';
import { alternate, diskpipe, type Row, remove, summary, timed } from './util.js';

export function benchClone(img: BenchImages, reps: number, fsName: string): Row[] {
  const out = join(img.dir, 'clone-out.raw');
  const first = diskpipe(['clone', img.raw, out]);
  timed('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img.raw, out]);
  remove(out);
  const runs = alternate(reps, {
    diskpipe: () => {
      const t = diskpipe(['clone', img.raw, out]);
      remove(out);
      return t;
    },
    cp: () => {
      const t = timed('cp', ['--reflink=auto', '--sparse=always', img.raw, out]);
      remove(out);
      return t;
    },
    diskpipeSync: () => {
      const t = diskpipe(['clone', '--sync', img.raw, out]);
      remove(out);
      return t;
    },
    cpSync: () => {
      const t = timed('sh', [
        '-c',
        'cp --reflink=auto --sparse=always "$0" "$1" && sync "$1"',
        img.raw,
        out,
      ]);
      remove(out);
      return t;
    },
  });
  const ours = summary(runs.diskpipe!);
  const cp = summary(runs.cp!);
  const cpSync = summary(runs.cpSync!);
  const oursSync = summary(runs.diskpipeSync!);
  return [
    {
      bench: 'clone',
      input: `raw on ${fsName}`,
      ours: ours.seconds,
      peer: cp.seconds,
      oursMedian: ours.median,
      peerMedian: cp.median,
      peerName: 'cp --reflink=auto --sparse=always',
      rssMiB: ours.rssMiB,
      note: `${first.stdout.trim()}; diskpipe --sync ${oursSync.seconds.toFixed(2)}s, cp + sync ${cpSync.seconds.toFixed(2)}s`,
    },
  ];
}
