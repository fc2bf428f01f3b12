/**
 * DiskCache with numbers that make no sense (NaN, negative, fractional): a UsageError before
 * anything happens, never a disk of an unexpected size or a prune that empties the cache.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskCache, UsageError } from '../../src/index.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('DiskCache: createDisk size and prune limits must be whole numbers >= 0', async () => {
  const src = join(dir, 'src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '1M');
  await qemuIo(src, ['write -P 0x11 0 64k'], 'qcow2');
  const cache = new DiskCache({ dir: join(dir, 'cache') });
  await cache.pull(src);
  for (const size of [Number.NaN, -1, 2 * 1024 * 1024 + 0.5, Number.POSITIVE_INFINITY]) {
    const dest = join(dir, `disk-${size}.raw`);
    await assert.rejects(cache.createDisk(src, dest, { size }), UsageError);
    assert.equal(existsSync(dest), false);
  }
  for (const limits of [
    { maxSize: -1 },
    { maxSize: Number.NaN },
    { olderThanMs: -5 },
    { olderThanMs: Number.NaN },
  ]) {
    await assert.rejects(cache.prune(limits), UsageError, JSON.stringify(limits));
  }
  assert.equal((await cache.list()).length, 1, 'nothing was pruned');
});

test('DiskCache: a DEST with a trailing slash is refused, not made as a file of that name', async () => {
  const src = join(dir, 'slash.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '1M');
  const cache = new DiskCache({ dir: join(dir, 'cache-slash') });
  await cache.pull(src);
  const dest = join(dir, 'vms');
  // It made the file 'vms' (convert and create fail with ENOTDIR, as qemu-img does).
  await assert.rejects(cache.createDisk(src, `${dest}/`), {
    name: 'UsageError',
    message: `${dest}/ ends with '/': DEST is the disk file to make, not a directory`,
  });
  assert.equal(existsSync(dest), false);
});
