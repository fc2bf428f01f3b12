import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageWrapper } from '../../src/image/base.js';
import { openImage } from '../../src/open.js';
import { compareImages } from '../../src/ops/compare.js';
import { diskpipe, qemuImg, runSync, sparseFile, tempDir } from '../helpers/peers.js';
import { CountingImage, writeBytes, writeRuns } from './util.js';

const dir = tempDir();
const KiB = 1024;
const MiB = 1024 * KiB;
let n = 0;

/** A raw file of `size` bytes with pattern data at `runs` (and explicit zeroes at `zeros`). */
function image(size: number, runs: [number, number][], zeros: [number, number][] = []): string {
  const path = sparseFile(join(dir, `img${n++}.raw`), size);
  writeRuns(path, runs);
  for (const [o, l] of zeros) writeBytes(path, Buffer.alloc(l), o);
  return path;
}

/** qemu-img compare's stdout and exit status. */
function qemuCompare(args: string[]) {
  const r = runSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', ...args]);
  return { status: r.status, stdout: r.stdout };
}

function ours(args: string[]) {
  const r = diskpipe(['compare', ...args]);
  return { status: r.status, stdout: r.stdout };
}

const base: [number, number][] = [
  [0, 64 * KiB],
  [3 * MiB, 200 * KiB],
];

const cases: [string, () => [string, string], string[]][] = [
  [
    'identical content, different allocation',
    () => [image(8 * MiB, base, [[5 * MiB, MiB]]), image(8 * MiB, base)],
    [],
  ],
  [
    'a byte differs inside data (reported at its 512-byte sector)',
    () => {
      const b = image(8 * MiB, base);
      writeBytes(b, Buffer.from([0]), 3 * MiB + 1000);
      return [image(8 * MiB, base), b];
    },
    [],
  ],
  [
    'data on one side, a hole on the other',
    () => [image(8 * MiB, [...base, [6 * MiB + 4096, 100]]), image(8 * MiB, base)],
    [],
  ],
  [
    'sizes differ, the longer one is zero past the end',
    () => [image(8 * MiB, base), image(12 * MiB, base, [[9 * MiB, MiB]])],
    [],
  ],
  [
    'sizes differ, data past the shorter end',
    () => [image(12 * MiB, [...base, [10 * MiB + 700, 10]]), image(8 * MiB, base)],
    [],
  ],
  [
    'sizes differ and content differs in the common part',
    () => [image(12 * MiB, [...base, [10 * MiB, 10]]), image(8 * MiB, [[0, 4096]])],
    [],
  ],
  ['strict: sizes differ', () => [image(8 * MiB, base), image(12 * MiB, base)], ['-s']],
];

for (const [name, make, flags] of cases) {
  test(`compare matches qemu-img compare: ${name}`, () => {
    const [a, b] = make();
    const theirs = qemuCompare([...flags, a, b]);
    const mine = ours([...flags, a, b]);
    assert.deepEqual(mine, theirs);
    const swapped = ours([...flags, b, a]);
    assert.deepEqual(swapped, qemuCompare([...flags, b, a]));
  });
}

test('compare: the first mismatch wins even when a later request finishes first', async () => {
  const a = image(64 * MiB, [[0, 64 * MiB]]);
  const bPath = image(64 * MiB, [[0, 64 * MiB]]);
  writeBytes(bPath, Buffer.from([1, 2, 3]), 9 * MiB + 7);
  writeBytes(bPath, Buffer.from([1, 2, 3]), 40 * MiB);
  class SlowEarly extends ImageWrapper {
    override async read(buf: Uint8Array, offset: number) {
      if (offset < 16 * MiB) await sleep(30);
      return super.read(buf, offset);
    }
  }
  const ia = await openImage(a);
  const ib = await openImage(bPath);
  const r = await compareImages(new SlowEarly(ia), ib, { inFlight: 8, requestSize: MiB });
  assert.deepEqual(r, {
    identical: false,
    reason: 'content',
    offset: 9 * MiB + 7,
    sizeMismatch: false,
  });
  await Promise.all([ia.close(), ib.close()]);
});

test('compare of 8 GiB images holding 1 MiB: reads under 16 MiB, zero sides not read', async () => {
  const size = 8 * 1024 * MiB;
  const aPath = image(size, [
    [0, 512 * KiB],
    [7 * 1024 * MiB, 512 * KiB],
  ]);
  const bPath = image(size, [
    [0, 512 * KiB],
    [7 * 1024 * MiB, 512 * KiB],
  ]);
  const a = new CountingImage(await openImage(aPath));
  const b = new CountingImage(await openImage(bPath));
  assert.deepEqual(await compareImages(a, b), { identical: true, sizeMismatch: false });
  assert.ok(a.bytesRead + b.bytesRead < 16 * MiB, `read ${a.bytesRead} + ${b.bytesRead}`);
  // Data only on one side: only that side is read.
  const cPath = image(size, [[4 * 1024 * MiB, MiB]]);
  const c = new CountingImage(await openImage(cPath));
  const d = new CountingImage(await openImage(image(size, [])));
  const r = await compareImages(c, d);
  assert.equal(r.identical, false);
  assert.equal(d.bytesRead, 0);
  assert.ok(c.bytesRead <= 4 * MiB);
  await Promise.all([a.close(), b.close(), c.close(), d.close()]);
});

test('compare: a missing image is an error (exit 2)', () => {
  const r = diskpipe(['compare', image(MiB, []), join(dir, 'missing.raw')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: .*missing\.raw/);
});

test('compare across formats: raw vs qcow2 written by qemu-img and by diskpipe', async () => {
  const raw = image(8 * MiB, base);
  const q = join(dir, 'cmp.qcow2');
  await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, q);
  assert.deepEqual(ours([raw, q]), { status: 0, stdout: 'Images are identical.\n' });
  const mine = join(dir, 'cmp-mine.qcow2');
  assert.equal(diskpipe(['convert', '-O', 'qcow2', raw, mine]).status, 0);
  assert.deepEqual(ours([q, mine]), { status: 0, stdout: 'Images are identical.\n' });
  const other = image(8 * MiB, [[0, 4096]]);
  const qOther = join(dir, 'cmp-other.qcow2');
  await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', other, qOther);
  const theirs = runSync('qemu-img', ['compare', q, qOther]);
  assert.deepEqual(ours([q, qOther]), { status: theirs.status, stdout: theirs.stdout });
});

/** Records the memory every read is asked to fill. */
class BufferRecorder extends CountingImage {
  readonly memories = new Set<ArrayBufferLike>();
  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.memories.add(buf.buffer);
    return super.read(buf, offset);
  }
}

test('compare reads both sides into one fixed shared pool (compressed clusters decode in place)', async () => {
  const raw = image(24 * MiB, [
    [0, 5 * MiB],
    [9 * MiB, 3 * MiB],
    [20 * MiB, 4 * MiB],
  ]);
  const q = join(dir, 'cmp-pool.qcow2');
  await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, q);
  const a = new BufferRecorder(await openImage(raw));
  const b = new BufferRecorder(await openImage(q));
  const r = await compareImages(a, b, { requestSize: MiB, inFlight: 4 });
  assert.deepEqual(r, { identical: true, sizeMismatch: false });
  assert.ok(a.reads >= 12 && b.reads >= 12, `${a.reads} + ${b.reads} reads`);
  // Not a fresh buffer per worker or request: one SharedArrayBuffer for the whole compare.
  const memories = new Set([...a.memories, ...b.memories]);
  assert.equal(memories.size, 1);
  assert.ok([...memories][0] instanceof SharedArrayBuffer);
  await Promise.all([a.close(), b.close()]);
});
