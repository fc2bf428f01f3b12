/**
 * XFS: free extents from each AG's bnobt are dropped, but only when the log is clean. Images
 * come from mkfs.xfs and a loop mount (files written, some deleted, unmounted cleanly or after
 * `xfs_io shutdown`); outputs are checked with xfs_repair -n, xfs_logprint and a read-only
 * mount of both sides.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { DiskpipeError } from '../../src/errors.js';
import { SparsifyImage, sparsify, sparsifyReport } from '../../src/filters/sparsify/index.js';
import { openImage } from '../../src/open.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { convertImage } from '../../src/ops/convert.js';
import { run, tempDir } from '../helpers/peers.js';
import { MemImage } from './mem-image.js';
import { randomFile } from './sparsify-disk.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-sparsify-xfs-');
let clean: string;

/** Mounts `img` at a fresh directory for `fn`, then unmounts and detaches the loop device. */
async function mounted<T>(
  img: string,
  options: string,
  fn: (mnt: string) => Promise<T>,
): Promise<T> {
  const mnt = join(dir, `mnt-${Math.random().toString(36).slice(2)}`);
  mkdirSync(mnt);
  await run('mount', ['-o', `loop,${options}`, img, mnt]);
  try {
    return await fn(mnt);
  } finally {
    await run('umount', ['-d', mnt]);
  }
}

async function logState(img: string): Promise<string> {
  const text = await run('xfs_logprint', ['-t', img]);
  return /state: <(\w+)>/.exec(text)![1]!;
}

async function digest(path: string, sparse: boolean): Promise<string> {
  const opened = await openImage(path);
  const image = sparse ? await sparsify(opened) : opened;
  try {
    return (await checksumImage(image)).digest;
  } finally {
    await image.close();
  }
}

before(async () => {
  clean = randomFile(join(dir, 'clean.img'), 300 * MiB);
  await run('mkfs.xfs', ['-q', '-f', clean]);
  await mounted(clean, 'rw', async (mnt) => {
    mkdirSync(join(mnt, 'etc'));
    for (let i = 0; i < 30; i++) randomFile(join(mnt, 'etc', `f${i}`), 1000 * i + 1);
    randomFile(join(mnt, 'keep.bin'), 12 * MiB + 3);
    randomFile(join(mnt, 'gone-1.bin'), 20 * MiB);
    randomFile(join(mnt, 'gone-2.bin'), 10 * MiB);
    await run('sync', []);
    await run('rm', [join(mnt, 'gone-1.bin'), join(mnt, 'gone-2.bin')]);
  });
});

test('clean XFS: free extents dropped, xfs_repair clean, files identical', async () => {
  assert.equal(await logState(clean), 'CLEAN');
  const out = join(dir, 'clean.out');
  const image = await sparsify(await openImage(clean));
  try {
    const r = await sparsifyReport(image);
    assert.equal(r.partitions[0]!.filesystem, 'xfs');
    assert.equal(r.partitions[0]!.action, 'sparsify', r.partitions[0]!.reason);
    assert.ok(r.droppedBytes >= 30 * MiB);
    await convertImage(image, out);
  } finally {
    await image.close();
  }
  await run('xfs_repair', ['-n', out]);
  await mounted(clean, 'ro', (a) =>
    mounted(out, 'ro,nouuid', async (b) => {
      await run('diff', ['-r', a, b]);
    }),
  );
  const sb = await run('xfs_db', ['-r', '-c', 'sb 0', '-c', 'p blocksize dblocks fdblocks', clean]);
  const field = (n: string) => Number(new RegExp(`^${n} = (\\d+)`, 'm').exec(sb)![1]);
  const used = (field('dblocks') - field('fdblocks')) * field('blocksize');
  const allocated = statSync(out).blocks * 512;
  assert.ok(allocated <= used, `allocated ${allocated} > used ${used}`);
});

test('XFS with a dirty log (shut down, not unmounted cleanly) passes through', async () => {
  const dirty = join(dir, 'dirty.img');
  copyFileSync(clean, dirty);
  await mounted(dirty, 'rw', async (mnt) => {
    randomFile(join(mnt, 'late.bin'), 2 * MiB);
    await run('sync', []);
    await run('rm', [join(mnt, 'keep.bin')]);
    await run('xfs_io', ['-x', '-c', 'shutdown', mnt]);
  });
  assert.equal(await logState(dirty), 'DIRTY');
  const r = await sparsifyReport(await SparsifyImage.open(await openImage(dirty)));
  assert.equal(r.partitions[0]!.action, 'pass');
  assert.match(r.partitions[0]!.reason ?? '', /log is dirty/);
  assert.equal(await digest(dirty, true), await digest(dirty, false));
});

test('XFS with a corrupt AGF or bnobt block keeps that AG whole', async () => {
  const bytes = readFileSync(clean);
  const control = await sparsifyReport(await SparsifyImage.open(new MemImage(bytes)));
  const agBlocks = bytes.readUInt32BE(84);
  const blockSize = bytes.readUInt32BE(4);
  // AG 1's AGF (sector 1 of the AG) and AG 2's bnobt root (agf_roots[0]).
  const agf1 = agBlocks * blockSize + 512;
  const agf2 = 2 * agBlocks * blockSize + 512;
  const root2 = 2 * agBlocks * blockSize + bytes.readUInt32BE(agf2 + 16) * blockSize;
  for (const at of [agf1 + 60, root2 + 100]) {
    const b = Buffer.from(bytes);
    b[at]! ^= 0x5a;
    const image = await SparsifyImage.open(new MemImage(b));
    const r = await sparsifyReport(image);
    assert.equal(r.partitions[0]!.action, 'sparsify');
    assert.ok(r.droppedBytes < control.droppedBytes);
    const ag = Math.floor(at / (agBlocks * blockSize));
    for await (const run of image.freeRuns(
      ag * agBlocks * blockSize,
      (ag + 1) * agBlocks * blockSize,
    )) {
      assert.fail(`dropped ${run.start}-${run.end} in the corrupt AG`);
    }
  }
});

test('random corruption of XFS superblock, AGF and bnobt never crashes', async () => {
  const bytes = readFileSync(clean);
  let s = 7;
  const rand = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = 0; i < 80; i++) {
    const saved = Buffer.from(bytes.subarray(0, 16384));
    for (let k = 1 + Math.floor(rand() * 8); k > 0; k--) {
      bytes[Math.floor(rand() * 16384)] = Math.floor(rand() * 256);
    }
    try {
      const image = await SparsifyImage.open(new MemImage(bytes));
      let covered = 0;
      for await (const e of image.extents()) covered += e.length;
      assert.equal(covered, bytes.length);
    } catch (err) {
      if (!(err instanceof DiskpipeError)) throw err;
    } finally {
      saved.copy(bytes, 0);
    }
  }
});
