/** A decode worker: runs batches sent by pool.ts, writing into the shared destination. */
import { parentPort } from 'node:worker_threads';
import { decodeDeflateBatch } from './batch.js';

export interface DecodeRequest {
  id: number;
  span: Uint8Array;
  items: Int32Array;
  dst: Uint8Array;
}

parentPort?.on('message', (req: DecodeRequest) => {
  const failure = decodeDeflateBatch(req.span, req.items, req.dst);
  parentPort!.postMessage({ id: req.id, failure });
});
// Every module is loaded: the pool may now terminate this thread without leaking the
// descriptor of a module file still being read (Node does not close it on terminate).
parentPort?.postMessage({ ready: true });
