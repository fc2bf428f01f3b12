import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statfsSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cloneFile } from '../../src/ops/clone.js';
import { diskpipe, qemuImg, runChecked, sparseFile, tempDir } from '../helpers/peers.js';
import { pattern, writeRuns } from './util.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function fsType(path: string): string {
  return runChecked('stat', ['-f', '-c', '%T', path]).trim();
}

/** Free bytes on the filesystem holding `path`, after pending writes reach it. */
function freeBytes(path: string): number {
  runChecked('sync', ['-f', path]);
  const s = statfsSync(path);
  return s.bfree * s.bsize;
}

/** An 8 GiB sparse file holding 1 MiB of data in four runs. */
function bigSparse(where: string): string {
  const path = sparseFile(join(where, 'disk.raw'), 8 * GiB);
  writeRuns(path, [
    [0, 256 * 1024],
    [GiB + 4096, 256 * 1024],
    [5 * GiB, 256 * 1024],
    [8 * GiB - 256 * 1024, 256 * 1024],
  ]);
  return path;
}

async function sameContent(a: string, b: string): Promise<void> {
  assert.equal(statSync(a).size, statSync(b).size);
  assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'raw', a, b), /identical/);
}

test(`clone on ${fsType(dir)} (${dir}): sparse copy of 8 GiB holding 1 MiB`, async () => {
  const src = bigSparse(dir);
  const dst = join(dir, 'clone.raw');
  const r = await cloneFile(src, dst);
  const reflinks = ['xfs', 'btrfs'].includes(fsType(dir));
  assert.equal(r.strategy, reflinks ? 'reflink' : 'sparse-copy');
  if (!reflinks) assert.equal(r.bytesWritten, MiB);
  assert.ok(r.bytesWritten < 16 * MiB);
  assert.ok(statSync(dst).blocks * 512 < 16 * MiB, 'holes preserved');
  await sameContent(src, dst);
  // The CLI says what ran.
  const cli = diskpipe(['clone', '--no-reflink', src, join(dir, 'clone2.raw')]);
  assert.equal(cli.status, 0, cli.stderr);
  assert.equal(cli.stdout, 'sparse copy: 1048576 bytes written\n');
});

test('clone without native calls: read/write fallback still keeps holes', async () => {
  const src = sparseFile(join(dir, 'small.raw'), 64 * MiB);
  writeRuns(src, [
    [MiB, MiB],
    [40 * MiB + 512, 4096],
  ]);
  const dst = join(dir, 'small-clone.raw');
  const r = diskpipe(['clone', src, dst], { env: { DISKPIPE_NO_NATIVE: '1' } });
  assert.equal(r.status, 0, r.stderr);
  // No SEEK_DATA: every block is read, but only non-zero 4 KiB blocks are written.
  assert.match(r.stdout, /^sparse copy: (\d+) bytes written\n$/);
  const written = Number(/(\d+) bytes/.exec(r.stdout)![1]);
  assert.ok(written <= MiB + 8192, `wrote ${written}`);
  assert.ok(readFileSync(dst).equals(readFileSync(src)));
  assert.ok(statSync(dst).blocks * 512 <= MiB + 64 * 1024);
});

test('clone on XFS (reflink=1, loop mount): O(1) reflink, copy-on-write', async (t) => {
  // Tests run as root in CI: a real XFS with reflink on a loop device, never skipped.
  const backing = sparseFile(join(dir, 'xfs.img'), 320 * MiB);
  runChecked('mkfs.xfs', ['-q', '-m', 'reflink=1', backing]);
  const mnt = join(dir, 'xfs');
  mkdirSync(mnt);
  runChecked('mount', ['-o', 'loop', backing, mnt]);
  t.after(() => spawnSync('umount', [mnt]));
  assert.equal(fsType(mnt), 'xfs');
  const src = bigSparse(mnt);
  const dst = join(mnt, 'vm.raw');
  const freeBefore = freeBytes(mnt);
  const r = await cloneFile(src, dst);
  assert.deepEqual(r, { strategy: 'reflink', bytesWritten: 0, size: 8 * GiB });
  // O(1): the clone shares the source's 1 MiB of data; only metadata blocks are new.
  const used = freeBefore - freeBytes(mnt);
  assert.ok(used < 256 * 1024, `the reflink used ${used} bytes`);
  await sameContent(src, dst);
  // Writing into the clone leaves the source alone.
  writeRuns(dst, [[0, 4096]], 9);
  const head = Buffer.alloc(4096);
  const fd = openSync(src, 'r');
  readSync(fd, head, 0, 4096, 0);
  closeSync(fd);
  assert.ok(head.equals(pattern(4096, 0)));
  const cli = diskpipe(['clone', src, join(mnt, 'vm2.raw')]);
  assert.equal(cli.stdout, 'reflink: 0 bytes written\n');
  // Forced sparse copy on XFS still works (copy_file_range may share blocks underneath).
  const sparse = await cloneFile(src, join(mnt, 'vm3.raw'), { strategy: 'sparse-copy' });
  assert.equal(sparse.strategy, 'sparse-copy');
  assert.equal(sparse.bytesWritten, MiB);
  await sameContent(src, join(mnt, 'vm3.raw'));
});

test('clone: a missing source is an error and creates nothing', () => {
  const dst = join(dir, 'never.raw');
  const r = diskpipe(['clone', join(dir, 'missing.raw'), dst]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: .*missing\.raw.*no such file/);
  assert.equal(existsSync(dst), false);
});

test('clone onto a full filesystem: a clean error naming DST, nothing left behind', (t) => {
  // Source and DST on one 4 MiB tmpfs, so the kernel copy (copy_file_range) is what fails.
  const mnt = join(dir, 'full-fs');
  mkdirSync(mnt);
  runChecked('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  t.after(() => spawnSync('umount', [mnt]));
  const src = sparseFile(join(mnt, 'src.raw'), 8 * MiB);
  writeRuns(src, [[0, 3 * MiB]]);
  const dst = join(mnt, 'vm.raw');
  const r = diskpipe(['clone', src, dst]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: .*vm\.raw.*no space left on device\n$/);
  assert.doesNotMatch(r.stderr, /internal error|diskpipe-\d+/);
  assert.deepEqual(readdirSync(mnt), ['src.raw']);
});
