/**
 * An image opened by diskpipe must agree with qemu, the peer that wrote it: format and virtual
 * size (qemu-img info), every byte (qemu-img convert -O raw), extents (zero and hole per byte
 * against qemu-img map), mapping() (qemu-img map --output=json, field by field after merging),
 * and the same for sub-ranges at awkward offsets. One check for every block-table format
 * (qcow2, vpc, vhdx, qed); plus the small tools the format tests share.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Extent, Image, MapEntry } from '../../src/image/types.js';
import { type OpenOptions, openImage } from '../../src/open.js';
import { checkedExtents, readAll, zeroRuns } from './extents.js';
import { type QemuMapEntry, qemuImg, qemuMap } from './peers.js';

/** One diskpipe mapping entry in qemu-img map's JSON shape. */
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

/** Merges adjacent map entries the way qemu-img map does before printing. */
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

/** mapping() of a range, checked to be contiguous, non-empty and covering. */
export async function ourMap(
  image: Image,
  offset = 0,
  length = image.size - offset,
): Promise<MapEntry[]> {
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

/** mapping() of a range as `qemu-img map --output=json` would print it (merged). */
export async function ourQemuMap(
  image: Image,
  offset = 0,
  length = image.size - offset,
): Promise<QemuMapEntry[]> {
  return mergeMap((await ourMap(image, offset, length)).map(toQemu));
}

/** The part of a map inside [start, end), host offsets moved along. */
export function clipMap(list: QemuMapEntry[], start: number, end: number): QemuMapEntry[] {
  return list
    .filter((e) => e.start + e.length > start && e.start < end)
    .map((e) => {
      const s = Math.max(e.start, start);
      const q: QemuMapEntry = { ...e, start: s, length: Math.min(e.start + e.length, end) - s };
      if (e.offset !== undefined) q.offset = e.offset + (s - e.start);
      return q;
    });
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

function extentKinds(list: Extent[]) {
  return kindRuns(
    list.map((e) => ({ start: e.offset, length: e.length, zero: e.zero, hole: e.hole })),
  );
}

function clipRuns(runs: [number, number, boolean, boolean][], start: number, end: number) {
  return runs
    .filter(([s, e]) => e > start && s < end)
    .map(([s, e, z, h]): [number, number, boolean, boolean] => [
      Math.max(s, start),
      Math.min(e, end),
      z,
      h,
    ]);
}

function clipExtents(list: Extent[], size: number): Extent[] {
  return list
    .filter((e) => e.offset < size)
    .map((e) => ({ ...e, length: Math.min(e.length, size - e.offset) }));
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

let counter = 0;

/** qemu's view of a whole image as raw bytes (`format`: qemu's -f, when it must not probe). */
export async function qemuRaw(path: string, dir: string, format?: string): Promise<Buffer> {
  const out = join(dir, `qemu-raw-${process.pid}-${counter++}.raw`);
  await qemuImg('convert', ...(format ? ['-f', format] : []), '-O', 'raw', path, out);
  try {
    return readFileSync(out);
  } finally {
    rmSync(out);
  }
}

/** Deterministic pseudo-random numbers (xorshift32), so failures reproduce. */
export function prng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** Sub-ranges at awkward offsets (block edges, the last sector) plus seeded random ones. */
function rangesFor(size: number): [number, number][] {
  const r: [number, number][] = [
    [1, 1],
    [4095, 2],
    [65535, 65538],
    [100_000, 300_001],
    [size - 513, 513],
    [size - 1, 1],
    [Math.floor(size / 3) + 7, Math.floor(size / 3)],
  ];
  const rnd = prng(size);
  for (let i = 0; i < 24; i++) {
    const off = rnd(size);
    r.push([off, Math.min(1 + rnd(3 * 1024 * 1024), size - off)]);
  }
  return r.filter(([s, l]) => s >= 0 && l > 0 && s + l <= size);
}

export interface QemuCheck extends OpenOptions {
  /**
   * Compare mapping() and extents with `qemu-img map` of the image itself (default). false
   * for formats qemu reports no block status for (vhdx: all "data"): extents are then
   * compared, zero per byte, with the map of qemu's raw conversion.
   */
  compareMap?: boolean;
  /**
   * Compare `hole` per byte with qemu's `!data` (default true). false where qemu says data for
   * unallocated host ranges (a fixed VHD on a sparse file: diskpipe reports holes there).
   */
  compareHoles?: boolean;
  /** The image has data somewhere (default true: guards against a test that wrote none). */
  expectData?: boolean;
  /** Sub-ranges to read, walk and map (default: awkward edges plus seeded random ranges). */
  ranges?: [number, number][];
}

/** Checks an open image against qemu's view of `path`; returns its extents. */
async function compare(
  image: Image,
  path: string,
  dir: string,
  opts: QemuCheck,
): Promise<Extent[]> {
  const f = opts.format ? ['-f', opts.format] : [];
  const info = JSON.parse(await qemuImg('info', '--output=json', ...f, path)) as {
    format: string;
    'virtual-size': number;
  };
  assert.equal(image.format, info.format, 'format as qemu-img info');
  // qemu's sizes are sector multiples: it rounds an odd virtual size (up when creating, down
  // when opening a header that says so); diskpipe keeps the exact size. Compare what both see.
  if (image.size % 512 === 0) assert.equal(image.size, info['virtual-size'], 'virtual size');
  else assert.ok(Math.abs(info['virtual-size'] - image.size) < 512, 'virtual size');
  const size = Math.min(image.size, info['virtual-size']);
  const rawPath = join(dir, `qemu-raw-${process.pid}-${counter++}.raw`);
  await qemuImg('convert', ...f, '-O', 'raw', path, rawPath);
  try {
    const raw = readFileSync(rawPath);
    assertSameBytes((await readAll(image)).subarray(0, size), raw.subarray(0, size), 'all bytes');

    const compareMap = opts.compareMap ?? true;
    const theirs = clipMap(
      mergeMap(await (compareMap ? qemuMap(path, opts.format) : qemuMap(rawPath, 'raw'))),
      0,
      size,
    );
    const mapped = clipMap(await ourQemuMap(image), 0, size);
    if (compareMap) assert.deepEqual(mapped, theirs, 'mapping() equals qemu-img map');

    const extents = clipExtents(await checkedExtents(image), size);
    const kinds = extentKinds(extents);
    if (compareMap && opts.compareHoles !== false) {
      const qemuKinds = kindRuns(
        theirs.map((e) => ({ start: e.start, length: e.length, zero: e.zero, hole: !e.data })),
      );
      assert.deepEqual(kinds, qemuKinds, 'extents agree with qemu-img map zero/data');
    }
    assert.deepEqual(
      zeroRuns(extents.map((e) => ({ start: e.offset, length: e.length, zero: e.zero }))),
      zeroRuns(theirs),
      'zero per byte as qemu-img map',
    );
    for (const e of extents) {
      if (e.zero) assert.ok(isZero(raw.subarray(e.offset, e.offset + e.length)), 'zero is zero');
    }
    if (opts.expectData !== false)
      assert.ok(
        extents.some((e) => !e.zero),
        'the image has data',
      );

    for (const [start, length] of opts.ranges ?? rangesFor(size)) {
      const what = `${start}+${length}`;
      const buf = Buffer.alloc(length, 0xee);
      await image.read(buf, start);
      assertSameBytes(buf, raw.subarray(start, start + length), `read ${what}`);
      const sub = await checkedExtents(image, start, length);
      assert.deepEqual(extentKinds(sub), clipRuns(kinds, start, start + length), `extents ${what}`);
      const subMap = await ourQemuMap(image, start, length);
      assert.deepEqual(subMap, clipMap(mapped, start, start + length), `mapping ${what}`);
    }
    return extents;
  } finally {
    rmSync(rawPath, { force: true });
  }
}

/** Opens `path` and checks it against qemu (see the top of this file); returns its extents. */
export async function checkAgainstQemu(
  path: string,
  dir: string,
  opts: QemuCheck = {},
): Promise<Extent[]> {
  const image = await openImage(path, opts);
  try {
    return await compare(image, path, dir, opts);
  } finally {
    await image.close();
  }
}

/** As checkAgainstQemu, and returns the image still open (the caller closes it). */
export async function openCheckedAgainstQemu(
  path: string,
  dir: string,
  opts: QemuCheck = {},
): Promise<Image> {
  const image = await openImage(path, opts);
  try {
    await compare(image, path, dir, opts);
    return image;
  } catch (err) {
    await image.close();
    throw err;
  }
}

/** Overwrites bytes of a file in place (hostile-image and feature-bit tests). */
export function patch(path: string, offset: number, bytes: ArrayLike<number>): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Uint8Array.from(bytes), 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** `length` bytes of a file at `offset` (zeroes past its end). */
export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
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
