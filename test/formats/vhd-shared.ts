/**
 * Shared checks for the block-table formats (vpc, vhdx, qed): every image is compared with
 * qemu-img, the peer that wrote it.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Image, MapEntry } from '../../src/image/types.js';
import { openImage } from '../../src/open.js';
import { openCounted, type ReadCount } from '../helpers/counting-source.js';
import { checkedExtents, readAll, zeroRuns } from '../helpers/extents.js';
import { type QemuMapEntry, qemuImg, qemuIo, qemuMap, sparseFile } from '../helpers/peers.js';

export const MiB = 1024 * 1024;

/**
 * A raw file with a mixed pattern: data runs, zero runs, unaligned writes, writes crossing
 * 1/2/8 MiB block boundaries, explicit zeroes inside data, and data in the last sector.
 */
export async function mixedRaw(dir: string, name: string, size: number): Promise<string> {
  const path = sparseFile(join(dir, name), size);
  const writes: [string, number, number][] = [
    ['-P 0x11', 0, MiB],
    ['-P 0x22', 3 * MiB, 100 * 1024],
    ['-P 0x33', 5000000, 3333],
    ['-P 0x44', 2 * MiB - 4096, 8192],
    ['-P 0x55', 8 * MiB - 512, 1536],
    ['-P 0x66', 12 * MiB, MiB],
    ['-z', 12 * MiB + 4096, 8192],
    ['-P 0x77', size - 512, 512],
  ];
  await qemuIo(
    path,
    writes
      .filter(([, off, len]) => off + len <= size)
      .map(([p, off, len]) => `write ${p} ${off} ${len}`),
    'raw',
  );
  return path;
}

/** qemu's per-byte zero view, clipped to the image (qemu may round sizes up). */
export function qemuZeroRuns(map: QemuMapEntry[], size: number): [number, number, boolean][] {
  return zeroRuns(
    map
      .filter((e) => e.start < size)
      .map((e) => ({ ...e, length: Math.min(e.length, size - e.start) })),
  );
}

export async function ourZeroRuns(
  image: Image,
  offset = 0,
  length = image.size - offset,
): Promise<[number, number, boolean][]> {
  const ext = await checkedExtents(image, offset, length);
  return zeroRuns(ext.map((e) => ({ start: e.offset, length: e.length, zero: e.zero })));
}

/** Merges map entries as `qemu-img map` does, in qemu's JSON shape. */
export function mergeQemu(list: QemuMapEntry[]): QemuMapEntry[] {
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
      (last.offset === undefined || last.offset + last.length === e.offset)
    ) {
      last.length += e.length;
    } else {
      out.push({ ...e });
    }
  }
  return out;
}

export async function ourMap(
  image: Image,
  offset = 0,
  length = image.size,
): Promise<QemuMapEntry[]> {
  assert.ok(image.mapping, 'image has a mapping()');
  const out: QemuMapEntry[] = [];
  for await (const e of image.mapping(offset, length) as AsyncIterable<MapEntry>) {
    const q: QemuMapEntry = {
      start: e.offset,
      length: e.length,
      depth: e.depth,
      present: e.present,
      zero: e.zero,
      data: e.data,
    };
    if (e.hostOffset !== undefined) q.offset = e.hostOffset;
    out.push(q);
  }
  return mergeQemu(out);
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

export interface PeerCheck {
  /** qemu's -f for the image (needed for fixed VHD, which qemu probes as raw). */
  format?: string;
  /** Compare mapping() with qemu-img map (formats where qemu reports block status). */
  compareMap: boolean;
}

/**
 * Opens `path` and checks it against qemu: virtual size, every byte (against `qemu-img convert
 * -O raw`), extents (zero per byte against qemu-img map, or against the map of qemu's raw
 * conversion when qemu cannot map the format), mapping(), and unaligned reads and extents.
 */
export async function checkAgainstQemu(
  path: string,
  rawOut: string,
  opts: PeerCheck,
): Promise<Image> {
  const f = opts.format ? ['-f', opts.format] : [];
  const info = JSON.parse(await qemuImg('info', '--output=json', ...f, path)) as {
    'virtual-size': number;
  };
  await qemuImg('convert', ...f, '-O', 'raw', path, rawOut);
  const expected = readFileSync(rawOut);
  const image = await openImage(path, opts.format ? { format: opts.format } : {});
  assert.equal(image.size, info['virtual-size'], 'virtual size as qemu-img info');
  assert.ok((await readAll(image)).equals(expected), 'bytes equal qemu-img convert -O raw');

  const theirMap = await qemuMap(
    opts.compareMap ? path : rawOut,
    opts.compareMap ? opts.format : 'raw',
  );
  assert.deepEqual(await ourZeroRuns(image), qemuZeroRuns(theirMap, image.size), 'zero runs');
  const fullMap = await ourMap(image);
  if (opts.compareMap) {
    assert.deepEqual(fullMap, mergeQemu(theirMap), 'mapping() equals qemu-img map');
  }
  await checkZeroSound(image, expected);

  const rnd = prng(image.size);
  for (let i = 0; i < 40; i++) {
    const off = rnd(image.size);
    const len = Math.min(1 + rnd(3 * MiB), image.size - off);
    const buf = Buffer.alloc(len, 0xee);
    await image.read(buf, off);
    assert.ok(buf.equals(expected.subarray(off, off + len)), `read ${off}+${len}`);
    assert.deepEqual(
      await ourMap(image, off, len),
      clipMap(fullMap, off, len),
      `map ${off}+${len}`,
    );
    const ext = await checkedExtents(image, off, len);
    for (const e of ext) {
      if (e.zero)
        assert.ok(isZero(expected.subarray(e.offset, e.offset + e.length)), 'zero extent');
    }
  }
  return image;
}

/** The part of a map inside [offset, offset+length), host offsets moved along. */
function clipMap(map: QemuMapEntry[], offset: number, length: number): QemuMapEntry[] {
  const out: QemuMapEntry[] = [];
  for (const e of map) {
    const from = Math.max(e.start, offset);
    const to = Math.min(e.start + e.length, offset + length);
    if (to <= from) continue;
    const c: QemuMapEntry = { ...e, start: from, length: to - from };
    if (e.offset !== undefined) c.offset = e.offset + (from - e.start);
    out.push(c);
  }
  return out;
}

/** Every extent that says zero must read as zero. */
async function checkZeroSound(image: Image, expected: Buffer): Promise<void> {
  for (const e of await checkedExtents(image)) {
    if (e.zero) {
      assert.ok(isZero(expected.subarray(e.offset, e.offset + e.length)), `zero at ${e.offset}`);
    }
  }
}

export function isZero(buf: Uint8Array): boolean {
  for (const b of buf) if (b !== 0) return false;
  return true;
}

/** Overwrites bytes of a file in place. */
export function patch(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

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

/**
 * Opens and reads an image, expecting a DiskpipeError with `code` (and a message matching
 * `message`) at open, at a full read, or while walking extents — never a crash or a hang.
 */
export async function expectFailure(
  path: string,
  code: string,
  message: RegExp,
  opts: { format?: string; untrusted?: boolean } = {},
): Promise<void> {
  let image: Image | undefined;
  const reads: ReadCount = { calls: 0, bytes: 0 };
  try {
    image = await openCounted(path, reads, opts);
    // Walk all extents, then read data extents with a bounded buffer (sizes may be absurd).
    const buf = new Uint8Array(MiB);
    let budget = 64 * MiB;
    for await (const e of image.extents()) {
      for (let off = e.offset; !e.zero && off < e.offset + e.length && budget > 0; off += MiB) {
        const n = Math.min(MiB, e.offset + e.length - off);
        await image.read(buf.subarray(0, n), off);
        budget -= n;
      }
    }
    assert.fail(`expected ${code} for ${path}`);
  } catch (err) {
    const e = err as { code?: string; message: string };
    assert.equal(e.code, code, `code for ${path}: ${e.message}`);
    assert.match(e.message, message);
  } finally {
    await image?.close();
  }
  // Failing is bounded work: the cases here need at most ~20 reads and ~6 MiB of the file, and
  // the full read above is capped at 64 MiB; a loop over an absurd table would go far past.
  assert.ok(reads.calls <= 1024 && reads.bytes <= 128 * MiB, `reads: ${JSON.stringify(reads)}`);
}
