/**
 * Classifies the blocks of a buffer just read: equal to what the target already reads there
 * (skip), all zero (a hole or a zero call), or data to write. Blocks are aligned to absolute
 * image offsets so the result does not depend on where requests happen to start.
 */

export type RunKind = 'skip' | 'zero' | 'data';

/** [start, end) relative to the buffer. */
export interface Run {
  start: number;
  end: number;
  kind: RunKind;
}

let zeroes = Buffer.alloc(64 * 1024);

/** A shared all-zero buffer of at least `n` bytes (never written to). */
export function zeroBlock(n: number): Buffer {
  if (zeroes.length < n) zeroes = Buffer.alloc(n);
  return zeroes;
}

export function isZero(buf: Uint8Array): boolean {
  const z = zeroBlock(buf.length);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.length).equals(z.subarray(0, buf.length));
}

/** Index of the first non-zero byte, or -1 (one memcmp for the whole buffer when it is zero). */
export function firstNonZero(buf: Buffer): number {
  const z = zeroBlock(Math.min(buf.length, 1 << 20));
  for (let i = 0; i < buf.length; i += z.length) {
    const end = Math.min(i + z.length, buf.length);
    if (buf.compare(z, 0, end - i, i, end) !== 0) return i + firstNonZeroSmall(buf, i, end);
  }
  return -1;
}

/** The first non-zero byte of buf[from, to) (known to hold one), relative to `from`. */
function firstNonZeroSmall(buf: Buffer, from: number, to: number): number {
  const z = zeroBlock(4096);
  for (let i = from; i < to; i += 4096) {
    const end = Math.min(i + 4096, to);
    if (buf.compare(z, 0, end - i, i, end) === 0) continue;
    for (let j = i; j < end; j++) if (buf[j] !== 0) return j - from;
  }
  return -1;
}

/** Index of the first byte where `a` and `b` (same length) differ, or -1. */
export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  for (let i = 0; i < a.length; i += 4096) {
    const end = Math.min(i + 4096, a.length);
    if (a.compare(b, i, end, i, end) === 0) continue;
    for (let j = i; j < end; j++) if (a[j] !== b[j]) return j;
  }
  return -1;
}

/**
 * Splits `buf` (the image bytes at `offset`) into runs.
 * - `block`: classification granularity; 0 means the whole buffer is data.
 * - `ref`: what the target reads there before the copy (its base image), or null for zeroes.
 * - `targetMatchesRef`: the target really reads as `ref`, so equal blocks can be skipped;
 *   otherwise zero blocks must be zeroed explicitly and nothing is skipped.
 */
export function classify(
  buf: Buffer,
  offset: number,
  block: number,
  ref: Buffer | null,
  targetMatchesRef: boolean,
): Run[] {
  if (block === 0) return [{ start: 0, end: buf.length, kind: 'data' }];
  const z = zeroBlock(Math.min(block, buf.length));
  const runs: Run[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const next = Math.min(buf.length, (Math.floor((offset + pos) / block) + 1) * block - offset);
    // Buffer#compare with ranges: no subarray objects per block.
    const zero = buf.compare(z, 0, next - pos, pos, next) === 0;
    let kind: RunKind;
    if (!targetMatchesRef) kind = zero ? 'zero' : 'data';
    else if (ref === null) kind = zero ? 'skip' : 'data';
    else if (buf.compare(ref, pos, next, pos, next) === 0) kind = 'skip';
    else kind = zero ? 'zero' : 'data';
    const last = runs.at(-1);
    if (last && last.kind === kind) last.end = next;
    else runs.push({ start: pos, end: next, kind });
    pos = next;
  }
  return runs;
}
