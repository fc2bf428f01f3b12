import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferPool } from '../../src/nbd/buffer-pool.js';

const KiB = 1024;

test('large buffers are shared memory, so decode workers fill replies in place', () => {
  const pool = new BufferPool();
  const buf = pool.take(256 * KiB + 24);
  assert.equal(buf.length, 256 * KiB + 24);
  assert.ok(buf.buffer instanceof SharedArrayBuffer);
  pool.give(buf);
  // Given back, the same memory serves the next request of that size class.
  const again = pool.take(256 * KiB);
  assert.ok(again.buffer === buf.buffer);
});

test('small buffers are plain and never pooled; foreign buffers are not taken in', () => {
  const pool = new BufferPool();
  const small = pool.take(100);
  assert.equal(small.length, 100);
  const foreign = Buffer.allocUnsafeSlow(128 * KiB + 64);
  pool.give(foreign);
  assert.ok(pool.take(128 * KiB).buffer !== foreign.buffer);
});

test('the pool keeps at most its bound', () => {
  const pool = new BufferPool(300 * KiB);
  const a = pool.take(200 * KiB);
  const b = pool.take(200 * KiB);
  pool.give(a);
  pool.give(b); // over the bound: dropped
  assert.ok(pool.take(200 * KiB).buffer === a.buffer);
  assert.ok(pool.take(200 * KiB).buffer !== b.buffer);
});
