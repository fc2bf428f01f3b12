import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CorruptImageError } from '../../src/errors.js';
import { ImageWrapper } from '../../src/image/base.js';
import type { Progress } from '../../src/image/types.js';
import { openImage } from '../../src/open.js';
import { copyImage, StreamTarget } from '../../src/ops/copy/index.js';
import { planWork } from '../../src/ops/copy/plan.js';
import { qemuDataRanges, sparseFile, tempDir } from '../helpers/peers.js';
import { CountingImage, FailingImage, writeBytes, writeRuns } from './util.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const KiB = 1024;

/** 40 MiB + 1000 bytes: data runs, a run of written zeroes, holes, an odd tail. */
function mixedSource(name: string): string {
  const path = sparseFile(join(dir, name), 40 * MiB + 1000);
  writeRuns(path, [
    [0, 64 * KiB],
    [MiB + 512, 3 * MiB],
    [20 * MiB, 8 * KiB],
    [40 * MiB, 1000],
  ]);
  // Allocated zeroes: data to SEEK_DATA, but must become a hole in the copy.
  writeBytes(path, Buffer.alloc(2 * MiB), 10 * MiB);
  return path;
}

async function newRawTarget(name: string, size: number) {
  const path = sparseFile(join(dir, name), size);
  return { path, image: await openImage(path, { writable: true, format: 'raw' }) };
}

test('planWork: aligned zero items, unaligned zero edges read as data, request-sized data', async () => {
  async function* ext() {
    yield { offset: 0, length: 1000, zero: false, hole: false };
    yield { offset: 1000, length: 300_000, zero: true, hole: true };
    yield { offset: 301_000, length: 9_000_000, zero: false, hole: false };
    yield { offset: 9_301_000, length: 50_000, zero: true, hole: false };
  }
  const items = [];
  for await (const i of planWork(ext(), 0, 9_351_000, 4 * MiB, 64 * KiB)) items.push(i);
  assert.deepEqual(items, [
    { offset: 0, length: 65536, zero: false },
    { offset: 65536, length: 196608, zero: true },
    { offset: 262144, length: 4194304 - 262144, zero: false },
    { offset: 4194304, length: 4194304, zero: false },
    { offset: 8388608, length: 9306112 - 8388608, zero: false },
    { offset: 9306112, length: 9_351_000 - 9306112, zero: true },
  ]);
});

test('raw to raw: same bytes, exact size, holes for zero extents and zero blocks', async () => {
  const srcPath = mixedSource('mixed.raw');
  const src = await openImage(srcPath);
  const { path, image } = await newRawTarget('mixed-out.raw', src.size);
  const r = await copyImage(src, image, { targetIsZero: true, copyRange: false });
  await image.close();
  await src.close();
  assert.ok(readFileSync(path).equals(readFileSync(srcPath)));
  assert.equal(statSync(path).size, 40 * MiB + 1000);
  // The 2 MiB of written zeroes at 10 MiB is not data in the copy; the rest is.
  const ranges = await qemuDataRanges(path);
  assert.ok(
    ranges.every(([a, b]) => b <= 10 * MiB || a >= 12 * MiB),
    JSON.stringify(ranges),
  );
  // Whole 4 KiB blocks are written: exactly the data ranges of the copy.
  assert.equal(
    r.bytesWritten,
    ranges.reduce((n, [a, b]) => n + (b - a), 0),
  );
  assert.ok(r.bytesWritten < 3 * MiB + 100 * KiB, `wrote ${r.bytesWritten}`);
  assert.ok(r.bytesRead < 8 * MiB, `read ${r.bytesRead}`);
});

test('existing target (no --target-is-zero): old data is overwritten and zero ranges zeroed', async () => {
  const srcPath = mixedSource('mixed2.raw');
  const src = await openImage(srcPath);
  const { path, image } = await newRawTarget('dirty.raw', src.size);
  writeRuns(path, [[0, 40 * MiB]], 7); // garbage everywhere
  const r = await copyImage(src, image);
  await image.close();
  await src.close();
  assert.ok(readFileSync(path).equals(readFileSync(srcPath)));
  assert.ok(r.bytesZeroed > 30 * MiB);
  // Zeroing punches holes: the big zero ranges are no longer data.
  const data = (await qemuDataRanges(path)).reduce((n, [a, b]) => n + (b - a), 0);
  assert.ok(data < 8 * MiB, `data ${data}`);
});

test('ordered stream target: raw bytes in order, holes written as zeroes', async () => {
  const srcPath = mixedSource('mixed3.raw');
  const src = await openImage(srcPath);
  const sink = new PassThrough({ highWaterMark: 64 * KiB });
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
  const target = new StreamTarget(sink, src.size);
  await copyImage(src, target, { ordered: true, inFlight: 8, requestSize: MiB });
  sink.end();
  await src.close();
  assert.ok(Buffer.concat(chunks).equals(readFileSync(srcPath)));
});

test('local raw to raw: copy_file_range when asked; by default data is read', async () => {
  const srcPath = mixedSource('mixed4.raw');
  const src = await openImage(srcPath);
  const { path, image } = await newRawTarget('cfr.raw', src.size);
  const r = await copyImage(src, image, { targetIsZero: true, copyRange: true });
  await image.close();
  assert.ok(readFileSync(path).equals(readFileSync(srcPath)));
  assert.equal(r.bytesRead, 0, 'data moved in the kernel, not read');
  // The allocated zeroes at 10 MiB are data in the source and stay data in the copy.
  assert.ok((await qemuDataRanges(path)).some(([a, b]) => a <= 10 * MiB && b >= 12 * MiB));
  const second = await newRawTarget('cfr2.raw', src.size);
  const r2 = await copyImage(src, second.image, { targetIsZero: true });
  await second.image.close();
  await src.close();
  assert.ok(r2.bytesRead > 0);
  assert.ok(readFileSync(second.path).equals(readFileSync(srcPath)));
  // Read by default, the allocated zeroes at 10 MiB become a hole, as with qemu-img convert.
  assert.ok(!(await qemuDataRanges(second.path)).some(([a, b]) => a <= 10 * MiB && b >= 12 * MiB));
});

test('8 GiB image with 1 MiB of data: reads and writes stay under 16 MiB', async () => {
  const srcPath = sparseFile(join(dir, 'big.raw'), 8 * 1024 * MiB);
  writeRuns(srcPath, [
    [0, 256 * KiB],
    [3 * 1024 * MiB + 4096, 256 * KiB],
    [8 * 1024 * MiB - 512 * KiB, 512 * KiB],
  ]);
  const src = new CountingImage(await openImage(srcPath));
  const out = await newRawTarget('big-out.raw', src.size);
  const dst = new CountingImage(out.image);
  await copyImage(src, dst, { targetIsZero: true });
  await dst.close();
  await src.close();
  assert.ok(src.bytesRead < 16 * MiB, `read ${src.bytesRead}`);
  assert.ok(dst.bytesWritten < 16 * MiB, `wrote ${dst.bytesWritten}`);
  assert.equal(dst.bytesZeroed, 0);
  assert.ok(statSync(out.path).blocks * 512 < 16 * MiB);
});

test('alignment: every write to the target covers whole units', async () => {
  const srcPath = mixedSource('mixed5.raw');
  const src = await openImage(srcPath);
  const out = await newRawTarget('aligned.raw', src.size);
  const writes: [number, number][] = [];
  class Recorder extends ImageWrapper {
    override write(buf: Uint8Array, offset: number) {
      writes.push([offset, buf.length]);
      return super.write(buf, offset);
    }
  }
  await copyImage(src, new Recorder(out.image), { targetIsZero: true, alignment: 64 * KiB });
  await out.image.close();
  await src.close();
  assert.ok(readFileSync(out.path).equals(readFileSync(srcPath)));
  for (const [off, len] of writes) {
    assert.equal(off % (64 * KiB), 0, `write at ${off}`);
    assert.ok(len % (64 * KiB) === 0 || off + len === src.size, `write ${off}+${len}`);
  }
});

test('several reads in flight, never more than asked', async () => {
  const srcPath = sparseFile(join(dir, 'dense.raw'), 32 * MiB);
  writeRuns(srcPath, [[0, 32 * MiB]]);
  let active = 0;
  let peak = 0;
  class Slow extends ImageWrapper {
    override async read(buf: Uint8Array, offset: number) {
      active++;
      peak = Math.max(peak, active);
      await sleep(5);
      await super.read(buf, offset);
      active--;
    }
  }
  const src = await openImage(srcPath);
  const out = await newRawTarget('dense-out.raw', src.size);
  await copyImage(new Slow(src), out.image, { targetIsZero: true, inFlight: 3, requestSize: MiB });
  await out.image.close();
  await src.close();
  assert.equal(peak, 3);
  assert.ok(readFileSync(out.path).equals(readFileSync(srcPath)));
});

test('progress: monotonic, ends at the total', async () => {
  const srcPath = mixedSource('mixed6.raw');
  const src = await openImage(srcPath);
  const out = await newRawTarget('progress.raw', src.size);
  const seen: Progress[] = [];
  await copyImage(src, out.image, { targetIsZero: true, onProgress: (p) => seen.push(p) });
  await out.image.close();
  await src.close();
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.done >= seen[i - 1]!.done);
  assert.deepEqual(seen.at(-1), { phase: 'copy', done: src.size, total: src.size });
});

test('a read error stops the copy with the offset; no write happens afterwards', async () => {
  const srcPath = sparseFile(join(dir, 'fail.raw'), 64 * MiB);
  writeRuns(srcPath, [[0, 64 * MiB]]);
  const inner = await openImage(srcPath);
  const src = new FailingImage(
    inner,
    20 * MiB,
    20 * MiB + 1,
    () => new CorruptImageError('bad L2 entry'),
  );
  const out = await newRawTarget('fail-out.raw', inner.size);
  const dst = new CountingImage(out.image);
  await assert.rejects(copyImage(src, dst, { targetIsZero: true, requestSize: MiB }), (err) => {
    const e = err as { code: string; message: string };
    assert.equal(e.code, 'CORRUPT');
    assert.match(e.message, /offset 20971520/);
    assert.match(e.message, /bad L2 entry/);
    return true;
  });
  const written = dst.bytesWritten;
  await sleep(50);
  assert.equal(dst.bytesWritten, written);
  await out.image.close();
  await inner.close();
});

test('bad options and a small target are refused', async () => {
  const srcPath = sparseFile(join(dir, 'opt.raw'), MiB);
  const src = await openImage(srcPath);
  const out = await newRawTarget('opt-out.raw', MiB / 2);
  await assert.rejects(copyImage(src, out.image), { code: 'OUT_OF_RANGE' });
  const ok = await newRawTarget('opt-ok.raw', MiB);
  await assert.rejects(copyImage(src, ok.image, { requestSize: 64 * MiB }), { code: 'USAGE' });
  await assert.rejects(copyImage(src, ok.image, { inFlight: 0 }), { code: 'USAGE' });
  await assert.rejects(copyImage(src, ok.image, { sparseSize: 1000 }), { code: 'USAGE' });
  await assert.rejects(copyImage(ok.image, src), { code: 'NOT_CAPABLE' });
  await Promise.all([src.close(), out.image.close(), ok.image.close()]);
});
