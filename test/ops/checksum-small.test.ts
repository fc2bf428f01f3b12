/**
 * An image of one hash window is hashed on the calling thread: a worker (~40 ms of CPU to
 * boot, on the path of a small checksum) has nothing to overlap with. Larger images still use
 * the shared pool. The digest is the same either way.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { checksumImage, DEFAULT_WINDOW_SIZE } from '../../src/ops/checksum/checksum.js';
import { sharedHashPool } from '../../src/ops/checksum/pool.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';
import { referenceBlkhash } from './checksum-vectors.js';

const dir = tempDir();

async function digestOf(path: string): Promise<string> {
  const image = await openImage(path);
  try {
    return (await checksumImage(image, { mapFiles: true })).digest;
  } finally {
    await image.close();
  }
}

test('an image of one window starts no hash worker; a larger one uses the pool; same digests', async () => {
  const small = join(dir, 'small.raw');
  await qemuImg('create', '-f', 'raw', small, String(DEFAULT_WINDOW_SIZE));
  await qemuIo(small, ['write -P 0x5a 64k 64k', 'write -P 0x11 1M 4k'], 'raw');
  const smallQcow2 = join(dir, 'small.qcow2');
  await qemuImg('convert', '-O', 'qcow2', small, smallQcow2);
  const pool = sharedHashPool();
  for (const path of [small, smallQcow2]) {
    assert.equal(await digestOf(path), referenceBlkhash(readFileSync(small)), path);
    assert.equal(pool.running, 0, `${path}: no worker`);
  }
  const large = join(dir, 'large.raw');
  await qemuImg('create', '-f', 'raw', large, String(2 * DEFAULT_WINDOW_SIZE));
  await qemuIo(large, ['write -P 0x5a 64k 64k', `write -P 0x22 ${DEFAULT_WINDOW_SIZE} 64k`], 'raw');
  assert.equal(await digestOf(large), referenceBlkhash(readFileSync(large)));
  assert.ok(pool.running > 0, 'a larger image is hashed by the pool');
  await pool.close();
});
