import { CorruptImageError } from '../errors.js';
import type { Extent, MapEntry } from './types.js';

export function sameKind(a: Extent, b: Extent): boolean {
  return a.zero === b.zero && a.hole === b.hole;
}

/** A place in the image and its length: extents, map entries, copy ranges. */
export interface Span {
  offset: number;
  length: number;
}

/**
 * Joins each span onto the one before when it starts where that one ends and `alike` says
 * so; empty spans are dropped. Yields copies, so the caller's objects are never changed.
 */
export async function* joinSpans<T extends Span>(
  source: AsyncIterable<T> | Iterable<T>,
  alike: (a: T, b: T) => boolean,
): AsyncGenerator<T> {
  let pending: T | undefined;
  for await (const s of source) {
    if (s.length === 0) continue;
    if (pending && pending.offset + pending.length === s.offset && alike(pending, s)) {
      pending.length += s.length;
      continue;
    }
    if (pending) yield pending;
    pending = { ...s };
  }
  if (pending) yield pending;
}

/** Merges adjacent extents of the same kind (the inputs must be ordered and contiguous). */
export function mergeExtents(source: AsyncIterable<Extent>): AsyncIterable<Extent> {
  return joinSpans(source, sameKind);
}

/** The map entry of an extent: its place and zero flag, the rest as the caller knows it. */
export function entryOf(e: Extent, rest: Omit<MapEntry, 'offset' | 'length' | 'zero'>): MapEntry {
  return { offset: e.offset, length: e.length, zero: e.zero, ...rest };
}

/**
 * Joins map entries as qemu-img map prints them: same depth and flags, host offsets (when
 * there are any) continuing.
 */
export function mergeMapEntries(source: AsyncIterable<MapEntry>): AsyncIterable<MapEntry> {
  return joinSpans(source, continues);
}

function continues(a: MapEntry, b: MapEntry): boolean {
  if (a.depth !== b.depth || a.present !== b.present || a.zero !== b.zero || a.data !== b.data)
    return false;
  if ((a.compressed ?? false) !== (b.compressed ?? false)) return false;
  if (a.hostOffset === undefined || b.hostOffset === undefined)
    return a.hostOffset === b.hostOffset;
  return a.hostOffset + a.length === b.hostOffset;
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
