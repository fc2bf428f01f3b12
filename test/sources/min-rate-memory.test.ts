/**
 * The rate watch passes chunks on without holding them: a download's memory stays bounded by
 * what is in flight, not by the size of the body (it once kept every chunk of a 1 GiB
 * download alive until the end, through one promise raced against every read).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { watchedChunks } from '../../src/sources/min-rate.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('min rate: chunks already passed on are not kept alive', async () => {
  const refs: WeakRef<Uint8Array>[] = [];
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 64; i++) {
      const chunk = new Uint8Array(64 * 1024);
      refs.push(new WeakRef(chunk));
      yield chunk;
    }
  }
  const chunks = watchedChunks(body(), {
    minRate: 1,
    minRateWindowMs: 3_600_000,
    abort: () => {},
    slow: () => new Error('slow'),
  });
  let seen = 0;
  let alive = -1;
  for await (const chunk of chunks) {
    seen += chunk.length > 0 ? 1 : 0;
    if (seen === 48) {
      // WeakRefs made in this job keep their targets until it ends: look after a tick.
      await tick();
      gc();
      alive = refs.slice(0, 40).filter((r) => r.deref() !== undefined).length;
    }
  }
  assert.equal(seen, 64);
  assert.equal(alive, 0, `${alive} of the first 40 chunks are still alive mid-body`);
});
