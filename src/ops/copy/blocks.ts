/**
 * Classifies the blocks of a buffer just read: equal to what the target already reads there
 * (skip), all zero (a hole or a zero call), or data to write. Blocks are aligned to absolute
 * image offsets so the result does not depend on where requests happen to start.
 */

import { firstDifference, firstNonZero, isZero, zeroBlock } from '../../io/bytes.js';

export type RunKind = 'skip' | 'zero' | 'data';

/** [start, end) relative to the buffer. */
export interface Run {
  start: number;
  end: number;
  kind: RunKind;
}

// The byte helpers live in io/bytes.ts (formats use them too); re-exported for the copy engine.
export { firstDifference, firstNonZero, isZero, zeroBlock };

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
  const words =
    buf.byteOffset % 4 === 0
      ? new Int32Array(buf.buffer, buf.byteOffset, buf.length >> 2)
      : undefined;
  const runs: Run[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const next = Math.min(buf.length, (Math.floor((offset + pos) / block) + 1) * block - offset);
    // Buffer#compare with ranges (no subarray objects per block), after a look at the first
    // 16 bytes, which settles most data blocks without a call into C++.
    const zero =
      headIsZero(buf, words, pos, next) && buf.compare(z, 0, next - pos, pos, next) === 0;
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

/**
 * Whether the first bytes of [pos, end) are zero (up to 16). Measured on the rootfs bench's
 * 728 MB of data (177,847 blocks of 4 KiB): classify took 63 ms with one Buffer#compare per
 * block, 13 ms with this look first (a data block's first 16 bytes are rarely all zero).
 */
function headIsZero(buf: Buffer, words: Int32Array | undefined, pos: number, end: number): boolean {
  if (words !== undefined && (pos & 3) === 0 && pos + 16 <= end) {
    const i = pos >> 2;
    return (words[i]! | words[i + 1]! | words[i + 2]! | words[i + 3]!) === 0;
  }
  const stop = Math.min(end, pos + 16);
  for (let i = pos; i < stop; i++) if (buf[i] !== 0) return false;
  return true;
}
