import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openImage } from '../../src/open.js';
import { BlkHash } from '../../src/ops/checksum/blkhash.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';
import { CountingImage } from './checksum-images.js';
import {
  referenceBlkhash,
  totalLength,
  VECTORS,
  vector,
  writeSparse,
  writeVectorFile,
} from './checksum-vectors.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Writes pieces at offsets into a sparse file of `size` bytes. */
async function fileChecksum(path: string, opts: Parameters<typeof checksumImage>[1] = {}) {
  const image = new CountingImage(await openImage(path));
  try {
    const r = await checksumImage(image, opts);
    return { ...r, counted: image.bytesRead };
  } finally {
    await image.close();
  }
}

describe('raw files: test vectors (zero ranges left as holes)', () => {
  for (const v of VECTORS.filter((x) => totalLength(x.segments) <= 4 * MiB)) {
    test(v.name, async () => {
      const path = writeVectorFile(join(dir, `${v.name}.raw`), v);
      const r = await fileChecksum(path, { digest: v.algorithm ?? 'sha256' });
      assert.equal(r.digest, v.digest);
      assert.equal(r.size, totalLength(v.segments));
    });
  }

  test('large_zero: 1 GiB sparse file, nothing read or hashed', async () => {
    const path = sparseFile(join(dir, 'large_zero.raw'), GiB);
    const r = await fileChecksum(path);
    assert.equal(r.digest, vector('large_zero').digest);
    assert.equal(r.counted, 0);
    assert.equal(r.hashedBytes, 0);
  });

  test('zero_8gib: 8 GiB sparse file', async () => {
    const path = sparseFile(join(dir, 'zero_8gib.raw'), 8 * GiB);
    const r = await fileChecksum(path);
    assert.equal(r.digest, vector('zero_8gib').digest);
    assert.equal(r.counted, 0);
  });
});

test('8 GiB sparse raw holding 1 MiB of data: reads and hashes < 16 MiB', async () => {
  const offset = 5 * GiB + 12345;
  const data = randomBytes(MiB);
  const path = writeSparse(join(dir, 'sparse8g.raw'), 8 * GiB, [[offset, data]]);
  const expected = new BlkHash()
    .zero(offset)
    .update(data)
    .zero(8 * GiB - offset - data.length)
    .digest('hex');
  const r = await fileChecksum(path);
  assert.equal(r.digest, expected);
  assert.ok(r.counted >= data.length && r.counted < 16 * MiB, `read ${r.counted} bytes`);
  assert.equal(r.bytesRead, r.counted);
  assert.ok(r.hashedBytes >= data.length && r.hashedBytes < 16 * MiB, `hashed ${r.hashedBytes}`);
});

test('odd-size raw file is hashed at its exact size', async () => {
  const data = randomBytes(100001);
  const path = writeSparse(join(dir, 'odd.raw'), data.length, [[0, data]]);
  const r = await fileChecksum(path);
  assert.equal(r.size, 100001);
  assert.equal(r.digest, referenceBlkhash(data));
});

describe('same bytes, any container: raw vs qcow2', () => {
  const size = 6 * MiB + 1536; // a short last block
  const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(24000));
  const src = join(dir, 'cross.raw');
  let rawDigest = '';

  test('raw source', async () => {
    writeSparse(src, size, [
      [0, randomBytes(MiB)],
      [2 * MiB + 4096, text.subarray(0, MiB)],
      [4 * MiB, Buffer.alloc(256 * 1024)], // allocated zeroes: found while reading
      [5 * MiB + 512, randomBytes(3000)],
      [size - 1536, Buffer.alloc(1536, 0x5a)],
    ]);
    const r = await fileChecksum(src);
    rawDigest = r.digest;
    assert.ok(r.bytesRead < size, 'holes are not read');
  });

  for (const [name, args] of [
    ['qcow2', []],
    ['qcow2 deflate', ['-c']],
    ['qcow2 zstd', ['-c', '-o', 'compression_type=zstd']],
    ['qcow2 extended_l2', ['-o', 'extended_l2=on,cluster_size=128k']],
  ] as const) {
    test(name, async () => {
      const dst = join(dir, `cross-${name.replace(/ /g, '-')}.qcow2`);
      await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...args, src, dst);
      const r = await fileChecksum(dst);
      assert.equal(r.digest, rawDigest);
      assert.equal(r.size, size);
    });
  }

  test('qcow2 zero clusters and subclusters inside data blocks', async () => {
    const q = join(dir, 'zeroes.qcow2');
    await qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=64k', q, '4M');
    await qemuIo(
      q,
      [
        'write -P 0x11 0 1M',
        'write -z 8k 4k',
        'write -z 128k 192k',
        'write -P 0x22 200000 5000',
        'write -P 0x33 3M 64k',
        'write -z 3M 32k',
      ],
      'qcow2',
    );
    const raw = join(dir, 'zeroes.raw');
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', q, raw);
    const a = await fileChecksum(q);
    const b = await fileChecksum(raw);
    assert.equal(a.digest, b.digest);
  });
});
