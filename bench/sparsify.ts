/**
 * convert --sparsify against plain convert (and qemu-img convert) on a GPT disk whose ext4
 * root holds 250 MiB of files and 400 MiB of deleted ones (blocks still allocated), plus a
 * FAT32 ESP and a swap partition. Reports output allocation and time, one run each (a
 * noisy shared machine: read the ratios, not the seconds). Not run in tests:
 *   node dist/bench/sparsify.js        (BENCH_DIR, default /var/tmp/diskpipe-bench)
 * Targets (issue 16): allocation ≤ used + 64 MiB; time ≤ 0.6 × plain convert.
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buildDisk } from '../test/filters/sparsify-disk.js';
import { diskpipe, MiB, remove, timed } from './util.js';

const parent = process.env.BENCH_DIR ?? '/var/tmp/diskpipe-bench';
mkdirSync(parent, { recursive: true });

const rootFiles: Record<string, number> = {};
const rootDeleted: string[] = [];
for (let i = 0; i < 10; i++) rootFiles[`used-${i}.bin`] = 25 * MiB;
for (let i = 0; i < 8; i++) {
  rootFiles[`deleted-${i}.bin`] = 50 * MiB;
  rootDeleted.push(`deleted-${i}.bin`);
}

console.log('building the disk (mkfs.ext4 -d, 650 MiB of random files)...');
const disk = await buildDisk(
  {
    espMiB: 40,
    rootMiB: 800,
    swapMiB: 64,
    rootFiles,
    rootDeleted,
    espFiles: { 'KERNEL.EFI': 8 * MiB },
    espDeleted: [],
  },
  parent,
);
const allocated = (p: string) => statSync(p).blocks * 512;
const used = Number(/(\d+)\/\d+ blocks/.exec(timed('e2fsck', ['-fn', disk.parts.root]).stdout)![1]);
const blockSize = Number(
  /Block size:\s+(\d+)/.exec(timed('dumpe2fs', ['-h', disk.parts.root]).stdout)![1],
);
const usedBytes = used * blockSize + 8 * MiB;
const out = join(disk.dir, 'out.raw');

function row(name: string, run: () => { seconds: number }): { seconds: number; alloc: number } {
  timed('sync', []);
  const t = run();
  const alloc = allocated(out);
  remove(out);
  console.log(
    `${name.padEnd(28)} ${t.seconds.toFixed(2).padStart(6)} s   output ${(alloc / MiB).toFixed(1).padStart(7)} MiB allocated`,
  );
  return { seconds: t.seconds, alloc };
}

console.log(
  `input: ${(allocated(disk.path) / MiB).toFixed(1)} MiB allocated; filesystems use ${(usedBytes / MiB).toFixed(1)} MiB; ${(disk.deletedBytes / MiB).toFixed(0)} MiB deleted`,
);
const qemu = row('qemu-img convert -O raw', () =>
  timed('qemu-img', ['convert', '-O', 'raw', disk.path, out]),
);
const plain = row('diskpipe convert', () => diskpipe(['convert', disk.path, out]));
const sparse = row('diskpipe convert --sparsify', () =>
  diskpipe(['convert', '--sparsify', disk.path, out]),
);
console.log(
  `sparsify: allocation ${(sparse.alloc / MiB).toFixed(1)} MiB vs used + 64 MiB = ${((usedBytes + 64 * MiB) / MiB).toFixed(1)} MiB (${sparse.alloc <= usedBytes + 64 * MiB ? 'ok' : 'MISSED'}); time ${(sparse.seconds / plain.seconds).toFixed(2)}x plain convert (target ≤ 0.6), ${(sparse.seconds / qemu.seconds).toFixed(2)}x qemu-img`,
);

// virt-sparsify is not installed here; fstrim on a loop mount is what its appliance runs.
// Compare the ext4 root alone: fstrim's allocation against the sparsified partition's.
const trimmed = join(disk.dir, 'trimmed-root.img');
timed('cp', ['--sparse=always', disk.parts.root, trimmed]);
const mnt = join(disk.dir, 'mnt');
mkdirSync(mnt);
timed('mount', ['-o', 'loop', trimmed, mnt]);
try {
  timed('fstrim', [mnt]);
} finally {
  timed('umount', ['-d', mnt]);
}
const slimRoot = join(disk.dir, 'slim-root.img');
diskpipe(['convert', '--sparsify', disk.parts.root, slimRoot]);
console.log(
  `ext4 root alone: fstrim on a loop mount leaves ${(allocated(trimmed) / MiB).toFixed(1)} MiB allocated, convert --sparsify ${(allocated(slimRoot) / MiB).toFixed(1)} MiB`,
);
remove(trimmed);
remove(slimRoot);

// Nothing to drop: the sparsified output itself (its free blocks are already holes). Three
// alternating runs each, medians: what the filter costs when it finds nothing.
const slim = join(disk.dir, 'slim.raw');
diskpipe(['convert', '--sparsify', disk.path, slim]);
const times: Record<'plain' | 'sparsify', number[]> = { plain: [], sparsify: [] };
for (let i = 0; i < 3; i++) {
  times.plain.push(diskpipe(['convert', slim, out]).seconds);
  remove(out);
  times.sparsify.push(diskpipe(['convert', '--sparsify', slim, out]).seconds);
  remove(out);
}
const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
console.log(
  `nothing to drop: convert ${mid(times.plain).toFixed(2)} s, convert --sparsify ${mid(times.sparsify).toFixed(2)} s (${((mid(times.sparsify) / mid(times.plain) - 1) * 100).toFixed(0)}% more; target ≤ 10%)`,
);
rmSync(disk.dir, { recursive: true, force: true });
