/**
 * Hash worker: receives a window of blocks (its buffer transferred, not copied), returns the
 * block digests and hands the buffer back for reuse.
 */
import { parentPort } from 'node:worker_threads';
import { BlockDigester } from './blkhash.js';
import type { HashReply, HashRequest } from './pool.js';

const digesters = new Map<string, BlockDigester>();

function digesterFor(algorithm: string, blockSize: number): BlockDigester {
  const key = `${algorithm}/${blockSize}`;
  let d = digesters.get(key);
  if (!d) {
    d = new BlockDigester(algorithm, blockSize);
    digesters.set(key, d);
  }
  return d;
}

parentPort?.on('message', (req: HashRequest) => {
  let reply: HashReply;
  const transfer: ArrayBuffer[] = req.buffer instanceof ArrayBuffer ? [req.buffer] : [];
  try {
    const d = digesterFor(req.algorithm, req.blockSize);
    const blocks = Math.ceil(req.length / req.blockSize);
    const digests = new Uint8Array(blocks * d.digestLength);
    const hashed = d.hashBlocks(new Uint8Array(req.buffer, 0, req.length), req.length, digests);
    reply = { id: req.id, buffer: req.buffer, digests: digests.buffer, hashedBytes: hashed };
    transfer.push(digests.buffer);
  } catch (err) {
    reply = { id: req.id, buffer: req.buffer, error: (err as Error)?.message ?? String(err) };
  }
  parentPort!.postMessage(reply, transfer);
});
