/**
 * runAhead: chunks arrive in order, an error only after the chunks made before it, the
 * source never gets more than `limit` bytes ahead, and stopping early closes the source.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runAhead } from '../../src/sources/decompress/run-ahead.js';

function counted(n: number, size: number, failAt = -1) {
  const state = { produced: 0, closed: false };
  async function* gen(): AsyncGenerator<Uint8Array> {
    try {
      for (let i = 0; i < n; i++) {
        if (i === failAt) throw new Error(`failed at ${i}`);
        state.produced++;
        yield new Uint8Array(size).fill(i);
      }
    } finally {
      state.closed = true;
    }
  }
  return { state, source: gen() };
}

test('runAhead hands over every chunk in order, at most `limit` bytes ahead', async () => {
  const { state, source } = counted(20, 1000);
  const seen: number[] = [];
  for await (const c of runAhead(source, 3000)) {
    // Let the pump run as far as it may while this consumer "writes".
    await new Promise((resolve) => setImmediate(resolve));
    seen.push(c[0]!);
    assert.ok(state.produced - seen.length <= 3 + 1, `${state.produced} made, ${seen.length} used`);
  }
  assert.deepEqual(
    seen,
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.ok(state.closed);
});

test('runAhead: an error comes after the chunks made before it', async () => {
  const { source } = counted(10, 10, 4);
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const c of runAhead(source, 1 << 20)) seen.push(c[0]!);
    })(),
    /failed at 4/,
  );
  assert.deepEqual(seen, [0, 1, 2, 3]);
});

test('runAhead: a consumer that stops early closes the source', async () => {
  const { state, source } = counted(1000, 100);
  for await (const c of runAhead(source, 500)) {
    if (c[0] === 2) break;
  }
  assert.ok(state.closed);
  assert.ok(state.produced < 20, `${state.produced} chunks made`);
});
