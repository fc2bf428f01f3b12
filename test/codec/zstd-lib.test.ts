/**
 * zstd qcow2 clusters through the system's libzstd (synchronous, in the decode workers, frame
 * ends found by libzstd in qemu's sector-padded spans) and through the npm binding (native
 * switch off): same bytes as qemu-img, and a broken frame is a CorruptImageError naming its
 * guest offset on both paths.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeStats } from '../../src/codec/engine.js';
import { zstdLib, zstdLibStatus } from '../../src/codec/zstd-lib.js';
import { setNativeEnabled } from '../../src/io/native.js';
import { openImage } from '../../src/open.js';
import '../../src/formats/index.js';
import { readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Offsets of every zstd frame magic in `data`. */
function frameStarts(data: Buffer): number[] {
  const at: number[] = [];
  for (let i = data.indexOf(MAGIC); i >= 0; i = data.indexOf(MAGIC, i + 1)) at.push(i);
  return at;
}

/** Runs `body` with the native layer on (libzstd) and off (npm binding). */
async function onBothPaths(body: (native: boolean) => Promise<void>): Promise<void> {
  for (const native of [true, false]) {
    setNativeEnabled(native);
    try {
      await body(native);
    } finally {
      setNativeEnabled(true);
    }
  }
}

test('libzstd loads here (CI installs zstd, which needs it)', () => {
  assert.equal(zstdLibStatus(), '');
  assert.match(zstdLib()!.version, /^1\.\d+\.\d+$/);
  setNativeEnabled(false);
  assert.equal(zstdLib(), null, 'the native switch turns it off');
  setNativeEnabled(true);
});

test('a zstd qcow2 made by qemu-img (frames padded to sectors, sharing sectors) reads as qemu-img does', async () => {
  // Clusters 5/8 random (raw blocks, frames of odd sizes over many sectors), text clusters
  // (compressed blocks) and tiny pattern clusters.
  const raw = join(dir, 'mixed.raw');
  const halfRandom = Buffer.alloc(2 * MiB);
  for (let at = 0; at < halfRandom.length; at += 65536) randomBytes(40960).copy(halfRandom, at);
  const text = Buffer.from('zstd clusters at C speed '.repeat(Math.ceil((2 * MiB) / 25)));
  const zeroes = Buffer.alloc(2 * MiB);
  writeFileSync(raw, Buffer.concat([halfRandom, text.subarray(0, 2 * MiB), zeroes]));
  await qemuIo(raw, ['write -P 0x5a 4608k 192k'], 'raw');
  const packed = join(dir, 'mixed.zstd.qcow2');
  await qemuImg(
    'convert',
    '-f',
    'raw',
    '-O',
    'qcow2',
    '-c',
    '-o',
    'compression_type=zstd',
    raw,
    packed,
  );
  const starts = frameStarts(readFileSync(packed));
  assert.ok(
    starts.some((s) => s % 512 !== 0),
    'qemu packs frames at byte offsets: some start inside a sector',
  );
  const want = readFileSync(raw);
  await onBothPaths(async (native) => {
    const before = { ...decodeStats };
    const image = await openImage(packed);
    try {
      assert.ok((await readAll(image)).equals(want), `native=${native}`);
    } finally {
      await image.close();
    }
    const frames = decodeStats.zstdFrames - before.zstdFrames;
    const lib = decodeStats.zstdLibFrames - before.zstdLibFrames;
    assert.ok(frames >= 67, `native=${native}: ${frames} frames`);
    assert.equal(lib, native ? frames : 0, `native=${native}: frames through libzstd`);
    if (native) {
      // Large reads of whole clusters: the workers read the padded spans themselves.
      assert.ok(decodeStats.workerReads > before.workerReads, 'worker reads');
    }
  });
});

test('a broken zstd frame in a qcow2 is a CorruptImageError naming its guest offset', async () => {
  // 16 clusters at 1 MiB, each a different pattern (one tiny frame each, in guest order).
  const src = join(dir, 'frames.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '4M');
  const writes = Array.from({ length: 16 }, (_, i) => `write -P ${i + 1} ${1024 + 64 * i}k 64k`);
  await qemuIo(src, writes);
  const packed = join(dir, 'frames.zstd.qcow2');
  await qemuImg('convert', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd', src, packed);
  const data = readFileSync(packed);
  const starts = frameStarts(data);
  assert.equal(starts.length, 16);
  // The 6th frame (guest offset 1 MiB + 5 × 64 KiB) loses its magic.
  const broken = Buffer.from(data);
  broken.writeUInt32LE(0x12345678, starts[5]!);
  const bad = join(dir, 'frames-broken.qcow2');
  writeFileSync(bad, broken);
  const guest = MiB + 5 * 65536;
  await onBothPaths(async (native) => {
    // One 1 MiB read (a worker batch) and one cluster-sized read (decoded inline).
    for (const [offset, length] of [
      [MiB, MiB],
      [guest, 65536],
    ] as const) {
      const image = await openImage(bad);
      try {
        await assert.rejects(image.read(new Uint8Array(length), offset), (err: Error) => {
          assert.equal(err.name, 'CorruptImageError', `native=${native}: ${err.message}`);
          assert.match(err.message, new RegExp(`guest offset ${guest}\\b.*zstd`));
          return true;
        });
      } finally {
        await image.close();
      }
    }
  });
});
