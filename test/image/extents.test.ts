/**
 * The one span joiner behind mergeExtents, mergeMapEntries, the copy planner and commit's
 * copy ranges: what joins, what does not, and that the caller's objects are left alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  collectExtents,
  joinSpans,
  mergeExtents,
  mergeMapEntries,
} from '../../src/image/extents.js';
import type { Extent, MapEntry } from '../../src/image/types.js';

async function* from<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const ext = (offset: number, length: number, zero: boolean, hole = zero): Extent => ({
  offset,
  length,
  zero,
  hole,
});

test('mergeExtents joins touching extents of one kind, drops empty ones, keeps inputs', async () => {
  const input = [ext(0, 10, false), ext(10, 0, true), ext(10, 5, false), ext(15, 5, true)];
  input.push(ext(20, 5, true, false), ext(25, 5, true, false));
  const before = structuredClone(input);
  assert.deepEqual(await collectExtents(mergeExtents(from(input))), [
    ext(0, 15, false),
    ext(15, 5, true),
    ext(20, 10, true, false),
  ]);
  assert.deepEqual(input, before);
});

test('joinSpans never joins across a gap, whatever `alike` says', async () => {
  const spans = [
    { offset: 0, length: 4 },
    { offset: 5, length: 4 },
    { offset: 9, length: 1 },
  ];
  assert.deepEqual(await all(joinSpans(spans, () => true)), [
    { offset: 0, length: 4 },
    { offset: 5, length: 5 },
  ]);
});

const entry = (offset: number, length: number, more: Partial<MapEntry> = {}): MapEntry => ({
  offset,
  length,
  depth: 0,
  present: true,
  zero: false,
  data: true,
  ...more,
});

test('mergeMapEntries joins as qemu-img map prints: same flags, host offsets continuing', async () => {
  const input = [
    entry(0, 10, { hostOffset: 100 }),
    entry(10, 10, { hostOffset: 110 }), // continues
    entry(20, 10, { hostOffset: 500 }), // host jump
    entry(30, 10, { hostOffset: 510, depth: 1 }), // other layer
    entry(40, 10, { zero: true, data: false }), // no host offset
    entry(50, 10, { zero: true, data: false }),
    entry(60, 10, { hostOffset: 560, compressed: true }),
    entry(70, 10, { hostOffset: 570 }), // compressed differs
  ];
  assert.deepEqual(await all(mergeMapEntries(from(input))), [
    entry(0, 20, { hostOffset: 100 }),
    entry(20, 10, { hostOffset: 500 }),
    entry(30, 10, { hostOffset: 510, depth: 1 }),
    entry(40, 20, { zero: true, data: false }),
    entry(60, 10, { hostOffset: 560, compressed: true }),
    entry(70, 10, { hostOffset: 570 }),
  ]);
});
