/** Budget: bounds on requests and bytes in flight, waiters served in order, no deadlock. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { Budget } from '../../src/nbd/budget.js';

test('waiters are granted in order, only when they fit', async () => {
  const b = new Budget(3, 100);
  const granted: number[] = [];
  const take = (id: number, bytes: number) => b.acquire(bytes).then(() => granted.push(id));
  await take(1, 60);
  const waiting = [take(2, 50), take(3, 10), take(4, 10)];
  await tick();
  // 3 would fit by bytes, but 2 was first: nobody passes it.
  assert.deepEqual(granted, [1]);
  b.release(60);
  await tick();
  assert.deepEqual(granted, [1, 2, 3, 4]);
  assert.equal(b.inFlight, 3);
  assert.equal(b.bytesInFlight, 70);
  // The request limit holds even for empty requests.
  const fifth = take(5, 0);
  await tick();
  assert.deepEqual(granted, [1, 2, 3, 4]);
  b.release(10);
  await Promise.all([...waiting, fifth]);
  assert.deepEqual(granted, [1, 2, 3, 4, 5]);
});

test('a request above the byte limit runs alone; idle() waits for the last release', async () => {
  const b = new Budget(10, 100);
  await b.acquire(30);
  let big = false;
  const bigDone = b.acquire(500).then(() => {
    big = true;
  });
  await tick();
  assert.equal(big, false);
  b.release(30);
  await bigDone;
  assert.equal(b.bytesInFlight, 500);
  let idle = false;
  const idleDone = b.idle().then(() => {
    idle = true;
  });
  await tick();
  assert.equal(idle, false);
  b.release(500);
  await idleDone;
  assert.equal(b.inFlight, 0);
});

test('many waiters: never more than the limit in flight, and all finish', async () => {
  const b = new Budget(4, Number.POSITIVE_INFINITY);
  let peak = 0;
  const work = Array.from({ length: 2000 }, async () => {
    await b.acquire(1);
    peak = Math.max(peak, b.inFlight);
    await tick();
    b.release(1);
  });
  await Promise.all(work);
  assert.equal(peak, 4);
  assert.equal(b.inFlight, 0);
});
