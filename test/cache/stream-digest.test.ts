/**
 * Download digests computed on a worker thread: the same hex as node:crypto and blkhash on
 * the calling thread, whatever the chunking; and a worker that still owes the digests keeps
 * the process alive (an unref'd one let `pull --json` exit 0 with no output, now and then).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { StreamDigests } from '../../src/cache/stream-digest.js';
import { BlkHash } from '../../src/ops/checksum/index.js';

const MiB = 1024 * 1024;

test('stream digests: sha256, sha512 and blkhash match the calling thread', async () => {
  const data = Buffer.concat([randomBytes(5 * MiB + 7), Buffer.alloc(2 * MiB)]);
  const d = new StreamDigests(['sha256', 'sha512', 'blkhash']);
  for (let pos = 0; pos < data.length; pos += 100_003) {
    const behind = d.update(data.subarray(pos, pos + 100_003));
    if (behind) await behind;
  }
  assert.equal(d.length, data.length);
  const hex = await d.finish();
  assert.equal(hex.sha256, createHash('sha256').update(data).digest('hex'));
  assert.equal(hex.sha512, createHash('sha512').update(data).digest('hex'));
  assert.equal(hex.blkhash, new BlkHash().update(data).digest('hex'));
});

test('stream digests: the worker stays referenced until it has answered', async () => {
  const unref = Worker.prototype.unref;
  let finishing = false;
  let unrefWhileFinishing = 0;
  Worker.prototype.unref = function (this: Worker) {
    if (finishing) unrefWhileFinishing++;
    return unref.call(this);
  };
  try {
    const data = randomBytes(3 * MiB + 5);
    const d = new StreamDigests(['sha256']);
    const behind = d.update(data);
    if (behind) await behind;
    finishing = true;
    const hex = await d.finish();
    finishing = false;
    assert.equal(hex.sha256, createHash('sha256').update(data).digest('hex'));
    assert.equal(unrefWhileFinishing, 0, 'the worker was unref while the digests were owed');
  } finally {
    Worker.prototype.unref = unref;
  }
});

test('stream digests: a closed stream refuses more data with a clear error', async () => {
  const d = new StreamDigests(['sha256']);
  d.close();
  assert.throws(() => d.update(new Uint8Array(10)), { code: 'ABORTED' });
});

test('stream digests: bytes lent in shared memory hash in order with copied ones', async () => {
  const data = Buffer.concat([randomBytes(MiB + 3), Buffer.alloc(MiB), randomBytes(300_001)]);
  const d = new StreamDigests(['sha256', 'blkhash']);
  // A resumed prefix is copied (update); the rest is lent from shared stages (take).
  const prefix = 500_000;
  const behind = d.update(data.subarray(0, prefix));
  if (behind) await behind;
  const lent: Promise<void>[] = [];
  for (let pos = prefix; pos < data.length; pos += MiB) {
    const stage = Buffer.from(new SharedArrayBuffer(MiB));
    const n = data.copy(stage, 0, pos, pos + MiB);
    lent.push(d.take(stage.subarray(0, n)));
  }
  await Promise.all(lent);
  const hex = await d.finish();
  assert.equal(d.length, data.length);
  assert.equal(hex.sha256, createHash('sha256').update(data).digest('hex'));
  assert.equal(hex.blkhash, new BlkHash().update(data).digest('hex'));
});
