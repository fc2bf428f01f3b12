import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll, zeroRuns } from '../helpers/extents.js';
import { qemuMap, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('raw: exact odd size, content and extents agree with qemu-img map', async () => {
  const path = join(dir, 'odd.raw');
  sparseFile(path, 3 * 1024 * 1024 + 1000);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(4096, 0xaa), 0, 4096, 1024 * 1024);
  writeSync(fd, Buffer.alloc(1000, 0xbb), 0, 1000, 3 * 1024 * 1024);
  closeSync(fd);
  const image = await openImage(path);
  try {
    assert.equal(image.format, 'raw');
    assert.equal(image.size, 3 * 1024 * 1024 + 1000);
    assert.deepEqual(await readAll(image), readFileSync(path));
    const ours = (await checkedExtents(image)).map((e) => ({
      start: e.offset,
      length: e.length,
      zero: e.zero,
    }));
    const theirs = (await qemuMap(path, 'raw')).map((e) => ({
      ...e,
      length: Math.min(e.length, image.size - e.start),
    }));
    assert.deepEqual(zeroRuns(ours), zeroRuns(theirs.filter((e) => e.length > 0)));
  } finally {
    await image.close();
  }
});

test('raw: reads past the end are refused', async () => {
  const path = join(dir, 'small.raw');
  sparseFile(path, 4096);
  const image = await openImage(path);
  await assert.rejects(image.read(new Uint8Array(10), 4090), { code: 'OUT_OF_RANGE' });
  await image.close();
});
