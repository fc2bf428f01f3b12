import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeSparse } from '../../src/cache/sparse-write.js';
import { LocalFile } from '../../src/io/file.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-sparse-write-');

test('writeSparse: zero 4 KiB blocks stay holes, data blocks and a short tail are written', async () => {
  // 3 data blocks, 16 zero blocks (64 KiB: a hole the filesystem keeps), 1 data, a short tail.
  const chunk = Buffer.alloc(20 * 4096 + 100);
  randomBytes(3 * 4096).copy(chunk, 0);
  randomBytes(4096).copy(chunk, 19 * 4096);
  chunk[chunk.length - 1] = 7;
  const path = join(dir, 'out.raw');
  const file = await LocalFile.open(path, 'w+');
  const at = 1024 * 1024; // file blocks line up with the chunk's
  let written: number;
  try {
    await file.truncate(at + chunk.length);
    written = await writeSparse(file, chunk, at);
  } finally {
    await file.close();
  }
  assert.equal(written, 4 * 4096 + 100);
  assert.deepEqual(readFileSync(path).subarray(at), chunk);
  // 4 data blocks and the tail's block are allocated; the zero blocks are not.
  assert.ok(
    statSync(path).blocks * 512 <= 5 * 4096,
    `${statSync(path).blocks * 512} bytes allocated`,
  );
});
