/**
 * Shared checks for the qcow2 tests: an image opened by diskpipe must agree with qemu on
 * content (qemu-img convert -O raw), extents (qemu-img map zero/data per byte) and map
 * (qemu-img map --output=json, field by field after merging).
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Extent, Image, MapEntry } from '../../src/image/types.js';
import { type OpenOptions, openImage } from '../../src/open.js';
import { checkedExtents, readAll, zeroRuns } from '../helpers/extents.js';
import { type QemuMapEntry, qemuImg, qemuMap } from '../helpers/peers.js';

/** Merges adjacent qemu-img map entries the way qemu-img map does before printing. */
export function mergeMap(list: QemuMapEntry[]): QemuMapEntry[] {
  const out: QemuMapEntry[] = [];
  for (const e of list) {
    const last = out.at(-1);
    if (
      last &&
      last.start + last.length === e.start &&
      last.depth === e.depth &&
      last.present === e.present &&
      last.zero === e.zero &&
      last.data === e.data &&
      (last.offset === undefined) === (e.offset === undefined) &&
      (e.offset === undefined || last.offset! + last.length === e.offset)
    ) {
      last.length += e.length;
    } else out.push({ ...e });
  }
  return out;
}

export function toQemu(e: MapEntry): QemuMapEntry {
  const q: QemuMapEntry = {
    start: e.offset,
    length: e.length,
    depth: e.depth,
    present: e.present,
    zero: e.zero,
    data: e.data,
  };
  if (e.hostOffset !== undefined) q.offset = e.hostOffset;
  return q;
}

export async function ourMap(image: Image, offset = 0, length = image.size): Promise<MapEntry[]> {
  assert.ok(image.mapping, 'image has mapping()');
  const out: MapEntry[] = [];
  let next = offset;
  for await (const e of image.mapping(offset, length)) {
    assert.equal(e.offset, next, 'mapping entries are contiguous');
    assert.ok(e.length > 0, 'mapping entry is not empty');
    next += e.length;
    out.push(e);
  }
  assert.equal(next, offset + length, 'mapping covers the range');
  return out;
}

/** Clips qemu's entries to `size` (qemu rounds odd virtual sizes up to 512 bytes). */
function clip(list: QemuMapEntry[], size: number): QemuMapEntry[] {
  return list
    .filter((e) => e.start < size)
    .map((e) => ({ ...e, length: Math.min(e.length, size - e.start) }));
}

/** Per-byte classification runs from extents: [start, end, zero, hole]. */
function kindRuns(list: { start: number; length: number; zero: boolean; hole: boolean }[]) {
  const out: [number, number, boolean, boolean][] = [];
  for (const e of list) {
    const last = out.at(-1);
    if (last && last[1] === e.start && last[2] === e.zero && last[3] === e.hole) {
      last[1] += e.length;
    } else out.push([e.start, e.start + e.length, e.zero, e.hole]);
  }
  return out;
}

let counter = 0;

/** qemu's view of a whole image as raw bytes. */
export async function qemuRaw(path: string, dir: string): Promise<Buffer> {
  const out = join(dir, `qemu-raw-${process.pid}-${counter++}.raw`);
  await qemuImg('convert', '-O', 'raw', path, out);
  const bytes = readFileSync(out);
  rmSync(out);
  return bytes;
}

export interface CheckOptions extends OpenOptions {
  /** Extra byte ranges to read and to ask extents for (unaligned starts). */
  ranges?: [number, number][];
  /** Expected number of data bytes (guards against a test that made no data). */
  expectData?: boolean;
}

/**
 * Opens `path` with diskpipe and checks read, extents and mapping against qemu. Returns the
 * image's extents for further assertions.
 */
export async function checkAgainstQemu(
  path: string,
  dir: string,
  opts: CheckOptions = {},
): Promise<Extent[]> {
  const image = await openImage(path, opts);
  try {
    assert.equal(image.format, 'qcow2');
    const raw = await qemuRaw(path, dir);
    // qemu rounds a virtual size that is not a multiple of 512 (up when creating, down when
    // opening a header that says so); diskpipe keeps the exact size. Compare what both see.
    const size = Math.min(image.size, raw.length);
    assert.ok(Math.abs(raw.length - image.size) < 512, 'size agrees with qemu');
    const ours = await readAll(image);
    assertSameBytes(ours.subarray(0, size), raw.subarray(0, size), 'whole image');

    const theirs = clip(mergeMap(await qemuMap(path)), size);
    const mapped = clip(mergeMap((await ourMap(image)).map(toQemu)), size);
    assert.deepEqual(mapped, theirs, 'mapping() equals qemu-img map --output=json');

    const extents = clipExtents(await checkedExtents(image), size);
    const ourKinds = kindRuns(
      extents.map((e) => ({ start: e.offset, length: e.length, zero: e.zero, hole: e.hole })),
    );
    const qemuKinds = kindRuns(
      theirs.map((e) => ({ start: e.start, length: e.length, zero: e.zero, hole: !e.data })),
    );
    assert.deepEqual(ourKinds, qemuKinds, 'extents agree with qemu-img map zero/data');
    assert.deepEqual(
      zeroRuns(extents.map((e) => ({ start: e.offset, length: e.length, zero: e.zero }))),
      zeroRuns(theirs),
    );
    for (const e of extents) {
      if (e.zero) assert.ok(isZero(raw.subarray(e.offset, e.offset + e.length)), 'zero is zero');
    }
    if (opts.expectData !== false) {
      assert.ok(
        extents.some((e) => !e.zero),
        'the test image has data',
      );
    }

    for (const [start, length] of opts.ranges ?? defaultRanges(size)) {
      const buf = new Uint8Array(length);
      await image.read(buf, start);
      assertSameBytes(
        Buffer.from(buf),
        raw.subarray(start, start + length),
        `read ${start}+${length}`,
      );
      const sub = await checkedExtents(image, start, length);
      assert.deepEqual(
        kindRuns(
          sub.map((e) => ({ start: e.offset, length: e.length, zero: e.zero, hole: e.hole })),
        ),
        clipRuns(ourKinds, start, start + length),
        `extents of ${start}+${length}`,
      );
      const subMap = mergeMap((await ourMap(image, start, length)).map(toQemu));
      assert.deepEqual(
        subMap,
        clipMap(mapped, start, start + length),
        `mapping ${start}+${length}`,
      );
    }
    return extents;
  } finally {
    await image.close();
  }
}

function clipExtents(list: Extent[], size: number): Extent[] {
  return list
    .filter((e) => e.offset < size)
    .map((e) => ({ ...e, length: Math.min(e.length, size - e.offset) }));
}

function defaultRanges(size: number): [number, number][] {
  const r: [number, number][] = [];
  for (const [s, l] of [
    [1, 1],
    [4095, 2],
    [65535, 65538],
    [100_000, 300_001],
    [size - 513, 513],
    [size - 1, 1],
    [Math.floor(size / 3) + 7, Math.floor(size / 3)],
  ] as [number, number][]) {
    if (s >= 0 && l > 0 && s + l <= size) r.push([s, l]);
  }
  return r;
}

function clipRuns(runs: [number, number, boolean, boolean][], start: number, end: number) {
  return runs
    .filter(([s, e]) => e > start && s < end)
    .map(([s, e, z, h]) => [Math.max(s, start), Math.min(e, end), z, h] as const)
    .map((x) => [...x]);
}

function clipMap(list: QemuMapEntry[], start: number, end: number): QemuMapEntry[] {
  return list
    .filter((e) => e.start + e.length > start && e.start < end)
    .map((e) => {
      const s = Math.max(e.start, start);
      const q: QemuMapEntry = { ...e, start: s, length: Math.min(e.start + e.length, end) - s };
      if (e.offset !== undefined) q.offset = e.offset + (s - e.start);
      return q;
    });
}

export function isZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** deepEqual on large buffers prints megabytes; report the first differing offset instead. */
export function assertSameBytes(a: Buffer, b: Buffer, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  if (a.equals(b)) return;
  let i = 0;
  while (a[i] === b[i]) i++;
  assert.fail(`${what}: first difference at byte ${i} (ours ${a[i]}, qemu ${b[i]})`);
}

/** Overwrites bytes of a file in place (hostile-image and feature-bit tests). */
export async function patch(path: string, offset: number, bytes: ArrayLike<number>): Promise<void> {
  const fh = await open(path, 'r+');
  await fh.write(Uint8Array.from(bytes), 0, bytes.length, offset);
  await fh.close();
}

export function be64(n: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

export function be32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}
