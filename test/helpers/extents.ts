import assert from 'node:assert/strict';
import type { Extent, Image } from '../../src/image/types.js';

/** Collects an image's extents and asserts the contract: ordered, contiguous, covering, non-empty. */
export async function checkedExtents(
  image: Image,
  offset = 0,
  length = image.size - offset,
): Promise<Extent[]> {
  const out: Extent[] = [];
  let next = offset;
  for await (const e of image.extents(offset, length)) {
    assert.equal(e.offset, next, `extent starts at ${e.offset}, expected ${next}`);
    assert.ok(e.length > 0, 'empty extent');
    assert.equal(typeof e.zero, 'boolean');
    assert.equal(typeof e.hole, 'boolean');
    next = e.offset + e.length;
    out.push(e);
  }
  assert.equal(next, offset + length, 'extents do not cover the range');
  return out;
}

/** Per-byte classification as sorted [start, end, zero] runs, adjacent equal runs merged. */
export function zeroRuns(
  list: { start: number; length: number; zero: boolean }[],
): [number, number, boolean][] {
  const out: [number, number, boolean][] = [];
  for (const e of list) {
    const last = out.at(-1);
    if (last && last[1] === e.start && last[2] === e.zero) last[1] += e.length;
    else out.push([e.start, e.start + e.length, e.zero]);
  }
  return out;
}

/** Reads a whole image into memory (small test images only). */
export async function readAll(image: Image): Promise<Buffer> {
  const buf = Buffer.alloc(image.size);
  const step = 1 << 20;
  for (let off = 0; off < image.size; off += step) {
    await image.read(buf.subarray(off, Math.min(off + step, image.size)), off);
  }
  return buf;
}
