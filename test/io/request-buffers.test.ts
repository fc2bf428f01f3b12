import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestBuffers } from '../../src/io/request-buffers.js';

test('request buffers: fixed slots on one shared allocation, the same memory every time', () => {
  const pool = new RequestBuffers(3, 4096);
  const a = pool.get(0);
  const c = pool.get(2);
  assert.equal(a.length, 4096);
  assert.ok(a.buffer instanceof SharedArrayBuffer);
  assert.equal(a.buffer, c.buffer);
  assert.equal(c.byteOffset, 2 * 4096);
  a[0] = 7;
  assert.equal(pool.get(0)[0], 7);
  assert.throws(() => pool.get(3), RangeError);
  assert.throws(() => pool.get(-1), RangeError);
});
