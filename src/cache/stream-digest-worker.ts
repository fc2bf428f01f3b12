/**
 * Worker side of stream-digest.ts: hashes the batches of a byte stream in order (sha256,
 * sha512 and/or blkhash) and hands each batch buffer back for reuse, or says when it is done
 * with bytes it was lent in shared memory.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { BlkHash } from '../ops/checksum/blkhash.js';
import type { StreamAlgorithm, StreamDigestReply, StreamDigestRequest } from './stream-digest.js';

const hashes = new Map<StreamAlgorithm, Hash | BlkHash>();

parentPort?.on('message', (req: StreamDigestRequest) => {
  let reply: StreamDigestReply;
  try {
    for (const a of req.algorithms ?? [])
      hashes.set(a, a === 'blkhash' ? new BlkHash() : createHash(a));
    if (req.kind === 'data') {
      const data = new Uint8Array(req.buffer, 0, req.length);
      for (const h of hashes.values()) h.update(data);
      parentPort!.postMessage({ kind: 'ack', buffer: req.buffer } satisfies StreamDigestReply, [
        req.buffer,
      ]);
      return;
    }
    if (req.kind === 'shared') {
      const data = new Uint8Array(req.buffer, req.offset, req.length);
      for (const h of hashes.values()) h.update(data);
      parentPort!.postMessage({ kind: 'taken' } satisfies StreamDigestReply);
      return;
    }
    const hex: Partial<Record<StreamAlgorithm, string>> = {};
    for (const [a, h] of hashes) hex[a] = h instanceof BlkHash ? h.digest('hex') : h.digest('hex');
    reply = { kind: 'digests', hex };
  } catch (err) {
    reply = { kind: 'error', message: (err as Error)?.message ?? String(err) };
  }
  parentPort!.postMessage(reply);
});
