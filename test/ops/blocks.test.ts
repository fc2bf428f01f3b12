import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, firstDifference, firstNonZero } from '../../src/ops/copy/blocks.js';

test('firstNonZero / firstDifference: exact positions, odd lengths, past 1 MiB', () => {
  for (const len of [1, 511, 4096, 4097, 3 * 1024 * 1024 + 5]) {
    const z = Buffer.alloc(len);
    assert.equal(firstNonZero(z), -1);
    assert.equal(firstDifference(z, Buffer.alloc(len)), -1);
    for (const at of [0, len >> 1, len - 1]) {
      const b = Buffer.alloc(len);
      b[at] = 7;
      assert.equal(firstNonZero(b), at, `len ${len} at ${at}`);
      assert.equal(firstDifference(z, b), at, `len ${len} at ${at}`);
    }
  }
});

test('classify: blocks aligned to image offsets; skip/zero/data against a reference', () => {
  const buf = Buffer.alloc(10000);
  buf[5000] = 1; // block [4096, 8192) of the image when buf starts at 0
  assert.deepEqual(classify(buf, 0, 4096, null, true), [
    { start: 0, end: 4096, kind: 'skip' },
    { start: 4096, end: 8192, kind: 'data' },
    { start: 8192, end: 10000, kind: 'skip' },
  ]);
  // The same bytes at image offset 1000: block edges move with the offset.
  assert.deepEqual(classify(buf, 1000, 4096, null, false), [
    { start: 0, end: 3096, kind: 'zero' },
    { start: 3096, end: 7192, kind: 'data' },
    { start: 7192, end: 10000, kind: 'zero' },
  ]);
  // Against a base: equal blocks are skipped, zero blocks over base data are zeroed.
  const ref = Buffer.alloc(10000, 3);
  ref.fill(0, 0, 4096);
  const data = Buffer.from(ref);
  data.fill(0, 4096, 8192);
  assert.deepEqual(classify(data, 0, 4096, ref, true), [
    { start: 0, end: 4096, kind: 'skip' },
    { start: 4096, end: 8192, kind: 'zero' },
    { start: 8192, end: 10000, kind: 'skip' },
  ]);
  assert.deepEqual(classify(buf, 0, 0, null, true), [{ start: 0, end: 10000, kind: 'data' }]);
});
