/**
 * The qcow2 writer, checked only through qemu: `qemu-img check` (exit 0: no corruption, no
 * leaked clusters), `qemu-img compare` against the expected bytes, `qemu-img info/map`.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Compression } from '../../src/formats/qcow2/writer/index.js';
import { Qcow2Writer, type Qcow2WriterOptions } from '../../src/formats/qcow2/writer/index.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { qemuImg, qemuIo, qemuMap, sparseFile, tempDir } from '../helpers/peers.js';
import { pattern, writeRuns } from '../ops/util.js';

const dir = tempDir();
const KiB = 1024;
const MiB = 1024 * KiB;
let counter = 0;

/** A writer plus the bytes it should end up holding. */
async function start(opts: Qcow2WriterOptions) {
  const path = join(dir, `w${counter++}.qcow2`);
  const file = await LocalFile.open(path, 'w+');
  const writer = await Qcow2Writer.create(file, opts);
  const expect = Buffer.alloc(writer.size);
  return {
    path,
    writer,
    expect,
    write(offset: number, length: number, seed = 1) {
      const data = pattern(length, offset, seed);
      data.copy(expect, offset);
      return writer.write(data, offset);
    },
    zero(offset: number, length: number) {
      expect.fill(0, offset, offset + length);
      return writer.zero(offset, length);
    },
    async verify() {
      await writer.close();
      const raw = `${path}.expect.raw`;
      writeFileSync(raw, expect);
      await qemuImg('check', '-q', path); // exit 3 on leaks, 2 on corruption
      assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', raw, path), /identical/);
      return JSON.parse(await qemuImg('info', '--output=json', path));
    },
  };
}

function shuffled<T>(list: T[], seed = 7): T[] {
  const out = [...list];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const variants: [number, boolean, Compression][] = [
  [512, false, 'deflate'],
  [4 * KiB, true, 'deflate'],
  [64 * KiB, false, 'deflate'],
  [64 * KiB, true, 'deflate'],
  [64 * KiB, true, 'zstd'],
  [2 * MiB, true, 'zstd'],
  [2 * MiB, false, 'deflate'],
];

for (const [cs, compress, compression] of variants) {
  test(`writer: parallel out-of-order writes, cluster ${cs}, ${compress ? compression : 'plain'}`, async () => {
    const size = 24 * MiB + 1000; // odd: qemu sees it rounded up to 512
    const w = await start({ size, clusterSize: cs, compress, compression });
    assert.equal(w.writer.size, 24 * MiB + 1024);
    // Whole-cluster runs, written in parallel in a shuffled order.
    const runs: [number, number][] = [];
    for (let off = 0; off < 16 * MiB; off += 2 * MiB) runs.push([off, Math.max(cs, 256 * KiB)]);
    await Promise.all(shuffled(runs).map(([o, l]) => w.write(o, l)));
    // Partial clusters: pieces that complete a cluster, pieces that never do, the odd tail.
    await w.write(17 * MiB + 100, 3000, 2);
    await w.write(20 * MiB + 4096, 8192, 3);
    await w.write(20 * MiB, 4096, 3);
    await w.write(size - 700, 700, 4);
    if (!compress) {
      // Rewrite part of an allocated cluster in place, and zero across cluster edges.
      await w.write(100, 1000, 5);
      await w.zero(2 * MiB + 512, 3 * cs);
    } else {
      await w.zero(4 * MiB, 2 * cs);
    }
    const info = await w.verify();
    assert.equal(info['cluster-size'], cs);
    assert.equal(info['virtual-size'], 24 * MiB + 1024);
    assert.equal(info['format-specific'].data.compat, '1.1');
    assert.equal(info['format-specific'].data['refcount-bits'], 16);
    assert.equal(
      info['format-specific'].data['compression-type'],
      compression === 'zstd' ? 'zstd' : 'zlib',
    );
    if (compress) {
      const check = JSON.parse(await qemuImg('check', '--output=json', w.path));
      assert.ok(check['compressed-clusters'] > 0, 'clusters are compressed');
    }
  });
}

test('writer: L2 tables evicted and reloaded, many refcount blocks (512-byte clusters)', async () => {
  // 512-byte clusters: one L2 table maps 32 KiB, one refcount block covers 128 KiB of file.
  const w = await start({ size: 64 * MiB, clusterSize: 512, l2CacheBytes: 1024 });
  const runs: [number, number][] = [];
  for (let i = 0; i < 200; i++) runs.push([((i * 7919) % 2000) * 32 * KiB, 4 * KiB]);
  for (const [o, l] of shuffled(runs)) await w.write(o, l, 9);
  await w.write(40 * MiB, 10 * MiB, 2); // > 64 refcount blocks: a two-cluster refcount table
  await w.verify();
});

test('writer: overwriting clusters leaks nothing (plain and compressed)', async () => {
  for (const compress of [false, true]) {
    const w = await start({ size: 8 * MiB, compress });
    await w.write(0, 4 * MiB, 1);
    await w.write(MiB, 2 * MiB, 2);
    await w.write(MiB, 64 * KiB, 3);
    await w.zero(3 * MiB, MiB);
    await w.verify();
  }
});

test('writer: flush makes a complete image; writing on after it still checks clean', async () => {
  const w = await start({ size: 16 * MiB });
  await w.write(0, MiB, 1);
  await w.writer.flush();
  await qemuImg('check', '-q', w.path);
  await w.write(8 * MiB, 3 * MiB, 2);
  await w.write(0, 64 * KiB, 3);
  await w.verify();
});

test('writer: backing reference and zero flag over backing data', async () => {
  const base = sparseFile(join(dir, 'base.raw'), 8 * MiB);
  writeRuns(base, [[0, 8 * MiB]], 4);
  const backing = await openImage(base);
  const w = await start({
    size: 8 * MiB,
    backingFile: 'base.raw',
    backingFormat: 'raw',
    backing,
  });
  // The expected content starts as the backing file's.
  pattern(8 * MiB, 0, 4).copy(w.expect);
  await w.write(MiB, 128 * KiB, 1);
  await w.zero(2 * MiB, 256 * KiB); // zero-flagged clusters: read as zero, not as backing
  await w.zero(3 * MiB + 1000, 2000); // partial: completed from the backing file
  await w.write(5 * MiB + 10, 20, 2); // partial write, rest of the cluster from backing
  await w.writer.close();
  await backing.close();
  const info = await w.verify();
  assert.equal(info['backing-filename'], 'base.raw');
  assert.equal(info['backing-filename-format'], 'raw');
  const map = await qemuMap(w.path);
  const zeroed = map.find((e) => e.start === 2 * MiB);
  assert.ok(zeroed?.zero && zeroed.depth === 0, JSON.stringify(map));
  // qemu can keep writing into the image it did not make.
  await qemuIo(w.path, ['write -P 0x33 6M 64k']);
  await qemuImg('check', '-q', w.path);
});

test('writer: absurd sizes and names are refused before anything is written', async () => {
  const file = await LocalFile.open(join(dir, 'bad.qcow2'), 'w+');
  await assert.rejects(Qcow2Writer.create(file, { size: 2 ** 50, clusterSize: 512 }), {
    code: 'USAGE',
  });
  await assert.rejects(Qcow2Writer.create(file, { size: MiB, clusterSize: 3000 }), {
    code: 'USAGE',
  });
  await assert.rejects(
    Qcow2Writer.create(file, { size: MiB, backingFile: 'x'.repeat(1024), backingFormat: 'raw' }),
    { code: 'USAGE' },
  );
  await assert.rejects(
    Qcow2Writer.create(file, {
      size: MiB,
      clusterSize: 512,
      backingFile: 'y'.repeat(500),
      backingFormat: 'raw',
    }),
    { code: 'USAGE' },
  );
  await file.close();
});

test('writer: an empty image (size 0) checks clean and qemu can grow it', async () => {
  const w = await start({ size: 0 });
  await w.writer.close();
  await qemuImg('check', '-q', w.path);
  await qemuIo(w.path, ['truncate 1M', 'write -P 1 0 64k'], 'qcow2');
  await qemuImg('check', '-q', w.path);
});
