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
