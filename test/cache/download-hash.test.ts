/**
 * A download's digests: sha256 always, and the blkhash when the first bytes could be a raw
 * image, both from one worker thread that is handed each byte once.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { DownloadHash } from '../../src/cache/download-hash.js';
import { StreamDigests } from '../../src/cache/stream-digest.js';
import { BlkHash } from '../../src/ops/checksum/index.js';

const MiB = 1024 * 1024;

/** Runs `fn` and returns the distinct workers that were sent data batches meanwhile. */
async function workersFed(fn: () => Promise<void>): Promise<number> {
  const post = Worker.prototype.postMessage;
  const fed = new Set<Worker>();
  Worker.prototype.postMessage = function (this: Worker, value: unknown, transfer?) {
    if ((value as { kind?: string })?.kind === 'data') fed.add(this);
    return post.call(this, value, transfer);
  };
  try {
    await fn();
  } finally {
    Worker.prototype.postMessage = post;
  }
  return fed.size;
}

test('download hash: a raw-looking download gets sha256 and blkhash from one worker', async () => {
  const data = Buffer.concat([Buffer.alloc(3 * MiB), randomBytes(2 * MiB + 123)]);
  let hex: Awaited<ReturnType<DownloadHash['digests']>> = {};
  const workers = await workersFed(async () => {
    const h = new DownloadHash(undefined, true);
    try {
      for (let pos = 0; pos < data.length; pos += 65_536) {
        const behind = h.update(data.subarray(pos, pos + 65_536));
        if (behind) await behind;
      }
      hex = await h.digests();
    } finally {
      h.close();
    }
  });
  assert.equal(hex.sha256, createHash('sha256').update(data).digest('hex'));
  assert.equal(hex.blkhash, new BlkHash().update(data).digest('hex'));
  assert.equal(workers, 1, 'each byte went to one worker');
});

test('download hash: no blkhash for a download that starts like an image format, or when not asked', async () => {
  const qcow2 = Buffer.alloc(2 * MiB);
  qcow2.write('QFI\xfb', 0, 'latin1');
  qcow2.writeUInt32BE(3, 4);
  const asked = new DownloadHash(undefined, true);
  await asked.update(qcow2);
  const hex = await asked.digests();
  assert.equal(hex.sha256, createHash('sha256').update(qcow2).digest('hex'));
  assert.equal(hex.blkhash, undefined);
  const notAsked = new DownloadHash('sha512', false);
  await notAsked.update(Buffer.alloc(100));
  const plain = await notAsked.digests();
  assert.equal(plain.blkhash, undefined);
  assert.equal(plain.sha512, createHash('sha512').update(Buffer.alloc(100)).digest('hex'));
  // A download shorter than the probe decides at the end.
  const tiny = new DownloadHash(undefined, true);
  await tiny.update(Buffer.from('hello'));
  assert.equal(
    (await tiny.digests()).blkhash,
    new BlkHash().update(Buffer.from('hello')).digest('hex'),
  );
});

test('stream digests: an algorithm can be added until the first batch went to the worker', async () => {
  const d = new StreamDigests(['sha256']);
  await d.update(randomBytes(1000));
  assert.equal(d.add('blkhash'), true);
  await d.update(randomBytes(MiB));
  assert.equal(d.add('sha512'), false);
  const hex = await d.finish();
  assert.ok(hex.blkhash);
  assert.equal(hex.sha512, undefined);
});
