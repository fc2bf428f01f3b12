/**
 * RunSet (the overlay's zeroed blocks, the NBD client's filled bytes) against a brute-force
 * model: after any sequence of adds, every lookup answers as a plain set of numbers would.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunSet } from '../../src/io/run-set.js';
import { IntervalSet } from '../../src/nbd/client/intervals.js';

const N = 64;

/** A deterministic sequence (no Math.random: a failure must replay). */
function* ranges(seed: number, count: number): Generator<[number, number]> {
  let x = seed;
  const next = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % N;
  };
  for (let i = 0; i < count; i++) {
    const a = next();
    const b = next();
    yield [Math.min(a, b), Math.min(Math.max(a, b), a + 9)];
  }
}

test('RunSet answers contains/overlaps/endOf/nextStart as a plain set does', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const runs = new RunSet();
    const model = new Set<number>();
    for (const [start, end] of ranges(seed, 12)) {
      runs.add(start, end);
      for (let v = start; v < end; v++) model.add(v);
      for (let x = 0; x <= N; x++) {
        assert.equal(runs.contains(x), model.has(x), `seed ${seed}: contains(${x})`);
        let next: number | undefined;
        for (let y = x; y < N; y++) {
          if (model.has(y)) {
            next = y;
            break;
          }
        }
        assert.equal(runs.nextStart(x), next, `seed ${seed}: nextStart(${x})`);
        if (model.has(x)) {
          let end = x;
          while (model.has(end)) end++;
          assert.equal(runs.endOf(x), end, `seed ${seed}: endOf(${x})`);
        }
        for (let len = 0; len <= 4 && x + len <= N; len++) {
          let any = false;
          for (let v = x; v < x + len; v++) any ||= model.has(v);
          assert.equal(runs.overlaps(x, x + len), any, `seed ${seed}: overlaps(${x}, ${x + len})`);
        }
      }
      // Touching runs are one run: the count is the model's number of maximal runs.
      let count = 0;
      for (let v = 0; v < N; v++) if (model.has(v) && !model.has(v - 1)) count++;
      assert.equal(runs.size, count);
    }
  }
});

test('RunSet.clear empties it; an empty add changes nothing', () => {
  const runs = new RunSet();
  runs.add(4, 4);
  assert.equal(runs.size, 0);
  runs.add(1, 3);
  runs.clear();
  assert.equal(runs.size, 0);
  assert.equal(runs.contains(1), false);
});

test('IntervalSet refuses overlaps, counts covered bytes, accepts chunks in any order', () => {
  const s = new IntervalSet();
  assert.equal(s.add(100, 200), true);
  assert.equal(s.add(0, 50), true);
  assert.equal(s.add(150, 160), false); // inside
  assert.equal(s.add(40, 60), false); // across a start
  assert.equal(s.add(50, 100), true); // touches both neighbours
  assert.equal(s.add(199, 201), false);
  assert.equal(s.add(200, 210), true);
  assert.equal(s.covered, 210);
});
