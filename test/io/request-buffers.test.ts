import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isNativeEnabled } from '../../src/io/native.js';
import { RequestBuffers } from '../../src/io/request-buffers.js';
import { addressOf, loadSystemLib } from '../../src/io/system-lib.js';

test('request buffers: fixed slots on one shared allocation, the same memory every time', () => {
  const pool = new RequestBuffers(3, 4096);
  const a = pool.get(0);
  const c = pool.get(2);
  assert.equal(a.length, 4096);
  assert.ok(a.buffer instanceof SharedArrayBuffer);
  assert.equal(a.buffer, c.buffer);
  assert.equal(c.byteOffset - a.byteOffset, 2 * 4096);
  a[0] = 7;
  assert.equal(pool.get(0)[0], 7);
  assert.throws(() => pool.get(3), RangeError);
  assert.throws(() => pool.get(-1), RangeError);
});

// V8 puts a large SharedArrayBuffer 16 bytes past a page boundary; pread/pwrite to and from
// such a buffer made the kernel's copies ~1.6x slower (system time of every convert).
test('request buffers: each one starts on a page boundary, also with an odd request size', (t) => {
  const sys = loadSystemLib(['libc.so.6']);
  if (!isNativeEnabled() || typeof sys === 'string') return t.skip('no native layer');
  for (const size of [2 * 1024 * 1024, 65536 + 512]) {
    const pool = new RequestBuffers(4, size);
    for (let slot = 0; slot < 4; slot++) {
      const buf = pool.get(slot);
      assert.equal(buf.length, size);
      assert.equal(addressOf(sys, buf) % 4096n, 0n, `slot ${slot} of ${size}`);
    }
  }
});
