/**
 * qcow2 windows that are one verbatim range of the file (this layer's uncompressed clusters)
 * are hashed by the hasher reading the file itself (direct-runs.ts); everything else is read
 * through the image. Digests must equal the blkhash of qemu-img's raw conversion in every
 * layout: compressed and uncompressed clusters mixed, zero clusters and subclusters, a backing
 * chain (the backing file's clusters are not this file's), an external data file, and a last
 * cluster cut short by the end of the file (qemu reads the rest as zeroes).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { mappedStats } from '../../src/io/mapped-file.js';
import { openImage } from '../../src/open.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { HashPool, InlineHasher } from '../../src/ops/checksum/pool.js';
import { qemuImg, qemuIo, qemuMap, tempDir } from '../helpers/peers.js';
import { referenceBlkhash } from './checksum-vectors.js';

const dir = tempDir();
const KiB = 1024;
const MiB = 1024 * KiB;
const pool = new HashPool(2);
after(() => pool.close());

/** The reference: blkhash of qemu-img's raw conversion of the image. */
async function expected(path: string): Promise<string> {
  const raw = `${path}.ref.raw`;
  await qemuImg('convert', '-O', 'raw', path, raw);
  return referenceBlkhash(readFileSync(raw));
}

/** Checksums with both hashers; returns the ranges the inline hasher mapped. */
async function check(path: string, windowSize = 64 * KiB): Promise<number> {
  const want = await expected(path);
  let mapped = 0;
  for (const hasher of [pool, new InlineHasher()]) {
    const image = await openImage(path);
    try {
      const before = mappedStats.ranges;
      const r = await checksumImage(image, { hasher, windowSize, inFlight: 3, mapFiles: true });
      assert.equal(r.digest, want, `${path} with ${hasher.threads} threads`);
      assert.equal(r.size, image.size);
      if (hasher.threads === 0) mapped = mappedStats.ranges - before;
    } finally {
      await image.close();
    }
  }
  return mapped;
}

/** A 4 MiB raw file: random, text and zero stretches, some unaligned. */
function source(name: string): string {
  const data = Buffer.alloc(4 * MiB);
  randomBytes(MiB).copy(data, 0);
  Buffer.from('blkhash in place\n'.repeat(40_000)).copy(data, MiB + 4096);
  randomBytes(300_000).copy(data, 3 * MiB - 12_345);
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
}

describe('qcow2 clusters hashed in place', () => {
  test('uncompressed qcow2: data windows are mapped, same digest', async () => {
    const q = join(dir, 'plain.qcow2');
    await qemuImg('convert', '-O', 'qcow2', source('plain.raw'), q);
    assert.ok((await check(q)) >= 16, 'the 1 MiB random head is 16 mapped windows');
  });

  test('compressed and uncompressed clusters mixed, zero clusters and 4 MiB windows', async () => {
    const q = join(dir, 'mixed.qcow2');
    await qemuImg('convert', '-O', 'qcow2', '-c', source('mixed.raw'), q);
    // Rewritten clusters are stored uncompressed, after the compressed ones.
    await qemuIo(q, ['write -P 0x61 512k 256k', 'write -z 2M 128k', 'write -P 0x62 3M 64k']);
    assert.ok((await check(q)) > 0);
    await check(q, 4 * MiB);
  });

  test('extended L2: zero subclusters inside data clusters', async () => {
    const q = join(dir, 'ext.qcow2');
    await qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=128k', q, '2M');
    await qemuIo(q, ['write -P 0x11 0 1M', 'write -z 8k 4k', 'write -z 256k 32k']);
    await check(q);
  });

  test('backing chain: the backing file clusters are read through the image', async () => {
    const base = join(dir, 'base.qcow2');
    await qemuImg('convert', '-O', 'qcow2', source('base.raw'), base);
    const top = join(dir, 'top.qcow2');
    await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
    await qemuIo(top, ['write -P 0x71 64k 128k', 'write -P 0x72 2M 1M']);
    assert.ok((await check(top)) > 0, "the top layer's own clusters are mapped");
  });

  test('external data file: never mapped from the qcow2 file', async () => {
    const q = join(dir, 'ext-data.qcow2');
    const data = join(dir, 'ext-data.bin');
    await qemuImg('create', '-f', 'qcow2', '-o', `data_file=${data}`, q, '2M');
    await qemuIo(q, ['write -P 0x55 0 1M']);
    assert.equal(await check(q), 0);
  });

  test('a last cluster cut short by the end of the file reads as zeroes there', async () => {
    const q = join(dir, 'cut.qcow2');
    await qemuImg('create', '-f', 'qcow2', q, '1M');
    await qemuIo(q, ['write -P 0x44 128k 64k']);
    const entry = (await qemuMap(q)).find((e) => e.data && e.offset !== undefined);
    assert.ok(entry?.offset !== undefined);
    assert.equal(statSync(q).size, entry.offset + 64 * KiB, 'the data cluster is last');
    truncateSync(q, entry.offset + 20_000);
    assert.equal(await check(q), 0);
  });
});
