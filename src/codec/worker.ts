/**
 * A decode worker: runs batches sent by pool.ts, writing into the shared destination. Deflate
 * items decode synchronously while the batch's zstd frames (asynchronous) are in progress.
 */
import { parentPort } from 'node:worker_threads';
import { type BatchFailure, decodeDeflateBatch } from './batch.js';
import { decodeZstdBatch, hasZstd } from './zstd-batch.js';

export interface DecodeRequest {
  id: number;
  span: Uint8Array;
  items: Int32Array;
  dst: Uint8Array;
}

/** The answer: the first failing item, or `fatal` when the codec itself is unusable. */
export interface DecodeReply {
  id: number;
  failure?: BatchFailure | undefined;
  fatal?: string;
}

function first(a: BatchFailure | undefined, b: BatchFailure | undefined) {
  if (a && b) return a.index < b.index ? a : b;
  return a ?? b;
}

parentPort?.on('message', (req: DecodeRequest) => {
  const zstd = hasZstd(req.items) ? decodeZstdBatch(req.span, req.items, req.dst) : undefined;
  // The zstd promise settles only after the deflate pass: no unhandled rejection meanwhile.
  zstd?.catch(() => {});
  const deflate = decodeDeflateBatch(req.span, req.items, req.dst);
  const reply = (r: DecodeReply) => parentPort!.postMessage(r);
  if (!zstd) {
    reply({ id: req.id, failure: deflate });
    return;
  }
  zstd.then(
    (z) => reply({ id: req.id, failure: first(deflate, z) }),
    (err: unknown) => reply({ id: req.id, fatal: (err as Error).message }),
  );
});
