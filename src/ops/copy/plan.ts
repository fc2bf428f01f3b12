import { joinSpans } from '../../image/extents.js';
import type { Extent } from '../../image/types.js';
import { alignDown, alignUp } from '../../io/bytes.js';

/** One unit of copy work: a data range to read (≤ request size) or a range known to be zero. */
export interface WorkItem {
  offset: number;
  length: number;
  zero: boolean;
}

/** Zero items are split so that progress moves and no single call runs for too long. */
const MAX_ZERO_ITEM = 1024 * 1024 * 1024;

/**
 * Turns source extents over [start, end) into work items. Zero items start and end on
 * `alignment` boundaries (or at `end`); the unaligned edges of a zero run are read with the
 * neighbouring data, so data items cover whole target units. Data items are at most
 * `requestSize` bytes and, after the first, start on request boundaries.
 */
export async function* planWork(
  extents: AsyncIterable<Extent>,
  start: number,
  end: number,
  requestSize: number,
  alignment: number,
): AsyncGenerator<WorkItem> {
  let cursor = start;
  function* dataUpTo(to: number): Generator<WorkItem> {
    while (cursor < to) {
      // Cut at multiples of the request size so that requests stay aligned.
      const next = Math.min(to, alignDown(cursor, requestSize) + requestSize);
      yield { offset: cursor, length: next - cursor, zero: false };
      cursor = next;
    }
  }
  for await (const run of joinSpans(extents, sameZero)) {
    if (!run.zero) continue;
    const runEnd = Math.min(run.offset + run.length, end);
    const zs = Math.max(alignUp(run.offset, alignment), cursor);
    const ze = runEnd === end ? end : alignDown(runEnd, alignment);
    if (ze <= zs) continue;
    yield* dataUpTo(zs);
    for (let off = zs; off < ze; off += MAX_ZERO_ITEM) {
      yield { offset: off, length: Math.min(MAX_ZERO_ITEM, ze - off), zero: true };
    }
    cursor = ze;
  }
  yield* dataUpTo(end);
}

/** Holes and allocated zeroes are alike here: only `zero` decides what is read. */
function sameZero(a: Extent, b: Extent): boolean {
  return a.zero === b.zero;
}
