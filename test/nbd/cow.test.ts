import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CowImage } from '../../src/filters/cow.js';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll } from '../helpers/extents.js';
import { sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const SIZE = 4 * 1024 * 1024 + 1000; // odd: the last block is short

function baseImage(name: string): string {
  const path = sparseFile(join(dir, name), SIZE);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(200_000, 0x11), 0, 200_000, 100_000);
  writeSync(fd, Buffer.alloc(1000, 0x22), 0, 1000, SIZE - 1000);
  closeSync(fd);
  return path;
}

/** A small deterministic PRNG (xorshift) so failures replay. */
function rng(seed: number) {
  let x = seed;
  return (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

async function checkAgainst(image: CowImage, model: Buffer): Promise<void> {
  assert.ok((await readAll(image)).equals(model), 'content differs from the model');
  for (const e of await checkedExtents(image)) {
    if (e.zero) {
      const run = model.subarray(e.offset, e.offset + e.length);
      assert.ok(
        run.every((b) => b === 0),
        `extent ${e.offset}+${e.length} says zero but is not`,
      );
    }
  }
  // Unaligned ranges too.
  await checkedExtents(image, 12345, 3_000_001);
}

for (const [label, blockSize, memoryLimit] of [
  ['in memory', 64 * 1024, 256 * 1024 * 1024],
  ['spilled to a temporary file', 4096, 64 * 1024],
] as const) {
  test(`cow overlay (${label}): random writes, zeroes and trims match a model`, async () => {
    const path = baseImage(`base-${blockSize}.raw`);
    const before = readFileSync(path);
    const model = Buffer.from(before);
    const spill = join(dir, `spill-${blockSize}`);
    mkdirSync(spill);
    const image = new CowImage(await openImage(path), { blockSize, memoryLimit, tempDir: spill });
    const rand = rng(blockSize);
    try {
      for (let i = 0; i < 300; i++) {
        const offset = rand(SIZE);
        const length = Math.min(SIZE - offset, 1 + rand(3 * blockSize));
        const op = rand(10);
        if (op < 6) {
          const data = Buffer.alloc(length, 1 + rand(255));
          await image.write(data, offset);
          data.copy(model, offset);
        } else if (op < 9) {
          await image.zero(offset, length);
          model.fill(0, offset, offset + length);
        } else {
          await image.trim(offset, length);
          // Trim only drops whole blocks; the model follows what the overlay reads back.
          const first = Math.ceil(offset / blockSize) * blockSize;
          const end =
            offset + length === SIZE ? SIZE : Math.floor((offset + length) / blockSize) * blockSize;
          if (end > first) model.fill(0, first, end);
        }
      }
      await checkAgainst(image, model);
      assert.ok(image.store.memoryUsed <= memoryLimit);
      if (memoryLimit < 1024 * 1024) assert.ok(image.store.spilled > 0, 'nothing was spilled');
      // The spill file is unlinked at creation: nothing is ever visible in its directory.
      assert.deepEqual(readdirSync(spill), []);
    } finally {
      await image.close();
    }
    assert.ok(readFileSync(path).equals(before), 'the base image was modified');
  });
}

test('cow overlay: zeroing the whole disk is one entry, then writes show through', async () => {
  const path = baseImage('whole.raw');
  const image = new CowImage(await openImage(path));
  try {
    await image.zero(0, SIZE);
    assert.deepEqual(await checkedExtents(image), [
      { offset: 0, length: SIZE, zero: true, hole: true },
    ]);
    await image.write(Buffer.alloc(10, 0x33), 70_000);
    const ext = await checkedExtents(image);
    assert.deepEqual(
      ext.map((e) => [e.offset, e.length, e.zero]),
      [
        [0, 65536, true],
        [65536, 65536, false],
        [131072, SIZE - 131072, true],
      ],
    );
    const buf = new Uint8Array(20);
    await image.read(buf, 69_995);
    assert.deepEqual([...buf], [0, 0, 0, 0, 0, ...Array(10).fill(0x33), 0, 0, 0, 0, 0]);
  } finally {
    await image.close();
  }
});

test('cow overlay: concurrent partial writes to one block keep every byte', async () => {
  const path = baseImage('concurrent.raw');
  const image = new CowImage(await openImage(path));
  try {
    await Promise.all(
      Array.from({ length: 16 }, (_, i) => image.write(Buffer.alloc(4096, i + 1), i * 4096)),
    );
    const buf = Buffer.alloc(65536);
    await image.read(buf, 0);
    for (let i = 0; i < 16; i++) assert.equal(buf[i * 4096 + 100], i + 1, `write ${i} was lost`);
  } finally {
    await image.close();
  }
});

test('cow overlay: out-of-range access is refused', async () => {
  const image = new CowImage(await openImage(baseImage('range.raw')));
  await assert.rejects(image.write(new Uint8Array(2), SIZE - 1), { code: 'OUT_OF_RANGE' });
  await assert.rejects(image.zero(SIZE, 1), { code: 'OUT_OF_RANGE' });
  await image.close();
});

test('cow overlay: a written buffer may be reused by the caller at once (the overlay copies it)', async () => {
  const image = new CowImage(await openImage(baseImage('reuse.raw')));
  // A Buffer, as the NBD server passes (Buffer#slice is a view, not a copy).
  const buf = Buffer.alloc(128 * 1024, 0xab);
  await image.write(buf, 0); // whole blocks
  await image.write(buf.subarray(0, 1000), 70_000); // part of a block
  buf.fill(0xee); // the server hands the buffer to the next request
  const back = Buffer.alloc(128 * 1024);
  await image.read(back, 0);
  assert.ok(back.every((b) => b === 0xab));
  await image.close();
});
