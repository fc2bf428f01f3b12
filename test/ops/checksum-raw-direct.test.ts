/**
 * A raw image on a local file is hashed by the hasher reading the file itself (file-range.ts):
 * the same digests as the vectors and as the construction, holes never read, and a file that
 * ends inside a range is a CorruptImageError, never a crash or a wrong digest.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RawImage } from '../../src/formats/raw.js';
import { mappedStats } from '../../src/io/mapped-file.js';
import { setNativeEnabled } from '../../src/io/native.js';
import { openImage } from '../../src/open.js';
import { BlockDigester } from '../../src/ops/checksum/blkhash.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { OrderedBlkHash } from '../../src/ops/checksum/ordered.js';
import { HashPool, InlineHasher } from '../../src/ops/checksum/pool.js';
import { tempDir } from '../helpers/peers.js';
import {
  prng,
  referenceBlkhash,
  totalLength,
  VECTORS,
  writeSparse,
  writeVectorFile,
} from './checksum-vectors.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const pool = new HashPool(2);
after(() => pool.close());

async function sum(path: string, opts: Parameters<typeof checksumImage>[1]) {
  const image = await openImage(path);
  try {
    assert.ok(image instanceof RawImage, 'the direct path is for a raw image on a file');
    return await checksumImage(image, { mapFiles: true, ...opts });
  } finally {
    await image.close();
  }
}

describe('raw file read by the hasher: test vectors, zero ranges as holes', () => {
  for (const v of VECTORS.filter((x) => totalLength(x.segments) <= 4 * MiB)) {
    test(v.name, async () => {
      const path = writeVectorFile(join(dir, `${v.name}.raw`), v);
      const digest = v.algorithm ?? 'sha256';
      for (const hasher of [pool, new InlineHasher()]) {
        const r = await sum(path, { digest, hasher, windowSize: 65536 * 3, inFlight: 2 });
        assert.equal(r.digest, v.digest, `${v.name} with ${hasher.threads} threads`);
      }
    });
  }
});

test('random sparse layouts: same digest as the construction, holes not read', async () => {
  const r = prng(11);
  for (let round = 0; round < 6; round++) {
    const size = 1 + r(6 * MiB);
    const data = Buffer.alloc(size);
    const pieces: [number, Uint8Array][] = [];
    let dataBytes = 0;
    for (let i = 0; i < 1 + r(6); i++) {
      const at = r(size);
      const bytes = randomBytes(Math.min(size - at, 1 + r(700_000)));
      // Every fourth piece is zeroes written as data (read, found zero, never hashed).
      if (i % 4 === 3) bytes.fill(0);
      bytes.copy(data, at);
      pieces.push([at, bytes]);
      dataBytes += bytes.length;
    }
    const path = writeSparse(join(dir, `layout-${round}.raw`), size, pieces);
    const windowSize = 65536 * (1 + r(40));
    const res = await sum(path, { hasher: pool, windowSize, inFlight: 1 + r(4) });
    assert.equal(res.digest, referenceBlkhash(data), `round ${round}`);
    assert.equal(res.size, size);
    // The file system reports holes in its own units: reads cover the data, not much more.
    assert.ok(res.bytesRead >= Math.min(dataBytes, size) / 2 || dataBytes === 0);
    assert.ok(res.bytesRead <= size);
  }
});

describe('a file that ends inside a range', () => {
  const path = join(dir, 'short.raw');
  writeFileSync(path, Buffer.alloc(100_000, 7));

  for (const [name, hasher] of [
    ['worker pool', pool],
    ['inline hasher', new InlineHasher()],
  ] as const) {
    test(`${name}: CorruptImageError naming where it ended`, async () => {
      const fd = openSync(path, 'r');
      try {
        const sink = new OrderedBlkHash(new BlockDigester(), hasher, {
          windowSize: 4 * 65536,
          inFlight: 2,
        });
        await sink.submitFile({ fd, position: 0, name: path }, 4 * 65536);
        await assert.rejects(sink.digest(), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'CORRUPT');
          assert.match(err.message, /short\.raw: file ended at 100000/);
          return true;
        });
        await sink.settle();
      } finally {
        closeSync(fd);
      }
    });
  }
});

describe('raw file hashed through a mapping (mapped-range.ts)', () => {
  test('unaligned windows and small blocks: same digest as the construction, mapped', async () => {
    const r = prng(23);
    const size = 3 * MiB + 12345;
    const data = randomBytes(size);
    data.fill(0, MiB, MiB + 300_000);
    const path = writeSparse(join(dir, 'mapped.raw'), size, [[0, data]]);
    for (const blockSize of [512, 4096, 65536]) {
      const before = mappedStats.ranges;
      const windowSize = blockSize * (1 + r(37));
      const res = await sum(path, { blockSize, windowSize, hasher: new InlineHasher() });
      assert.equal(res.digest, referenceBlkhash(data, 'sha256', blockSize), `${blockSize}`);
      assert.ok(mappedStats.ranges > before, 'the windows were mapped, not read');
    }
  });

  test('the library maps nothing unless asked (mapFiles): a truncation cannot kill its caller', async () => {
    const data = randomBytes(MiB + 777);
    const path = writeSparse(join(dir, 'default-unmapped.raw'), data.length, [[0, data]]);
    const image = await openImage(path);
    try {
      const before = mappedStats.ranges;
      const res = await checksumImage(image, { hasher: new InlineHasher(), windowSize: 3 * 65536 });
      assert.equal(res.digest, referenceBlkhash(data));
      assert.equal(mappedStats.ranges, before);
    } finally {
      await image.close();
    }
  });

  test('without native calls the ranges are read, with the same digest', async () => {
    const data = randomBytes(MiB + 777);
    const path = writeSparse(join(dir, 'unmapped.raw'), data.length, [[0, data]]);
    setNativeEnabled(false);
    try {
      const before = mappedStats.ranges;
      const res = await sum(path, { hasher: new InlineHasher(), windowSize: 3 * 65536 });
      assert.equal(res.digest, referenceBlkhash(data));
      assert.equal(mappedStats.ranges, before);
    } finally {
      setNativeEnabled(true);
    }
  });

  for (const [name, hasher] of [
    ['worker pool', pool],
    ['inline hasher', new InlineHasher()],
  ] as const) {
    test(`${name}: a range past the end of the file is not mapped: CorruptImageError`, async () => {
      const path = join(dir, 'short-mapped.raw');
      writeFileSync(path, Buffer.alloc(100_000, 7));
      const fd = openSync(path, 'r');
      try {
        const sink = new OrderedBlkHash(new BlockDigester(), hasher, {
          windowSize: 4 * 65536,
          inFlight: 2,
        });
        await sink.submitFile({ fd, position: 0, name: path, mapped: true }, 4 * 65536);
        await assert.rejects(sink.digest(), /short-mapped\.raw: file ended at 100000/);
        await sink.settle();
      } finally {
        closeSync(fd);
      }
    });
  }
});
