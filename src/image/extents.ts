import { CorruptImageError } from '../errors.js';
import type { Extent } from './types.js';

export function sameKind(a: Extent, b: Extent): boolean {
  return a.zero === b.zero && a.hole === b.hole;
}

/** Merges adjacent extents of the same kind (the inputs must be ordered and contiguous). */
export async function* mergeExtents(source: AsyncIterable<Extent>): AsyncIterable<Extent> {
  let pending: Extent | undefined;
  for await (const e of source) {
    if (e.length === 0) continue;
    if (pending && pending.offset + pending.length === e.offset && sameKind(pending, e)) {
      pending.length += e.length;
      continue;
    }
    if (pending) yield pending;
    pending = { ...e };
  }
  if (pending) yield pending;
}

/**
 * Clips extents to [start, end), drops empty ones, and checks the contract: ordered,
 * contiguous and covering. A format that breaks it is reported, never trusted silently.
 */
export async function* clipExtents(
  source: AsyncIterable<Extent>,
  start: number,
  end: number,
  who: string,
): AsyncIterable<Extent> {
  let next = start;
  for await (const e of source) {
    const from = Math.max(e.offset, next);
    const to = Math.min(e.offset + e.length, end);
    if (e.offset > next) {
      throw new CorruptImageError(`${who}: extents skip from ${next} to ${e.offset}`);
    }
    if (to <= from) {
      if (e.offset >= end) break;
      continue;
    }
    yield { offset: from, length: to - from, zero: e.zero, hole: e.hole };
    next = to;
    if (next >= end) break;
  }
  if (next < end) throw new CorruptImageError(`${who}: extents end at ${next}, before ${end}`);
}

/** Collects extents into an array (tests, small ranges). */
export async function collectExtents(source: AsyncIterable<Extent>): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of source) out.push(e);
  return out;
}
