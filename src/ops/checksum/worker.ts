/**
 * Hash worker: receives a window of blocks (a shared buffer, or a plain one transferred, never
 * copied) or a local file range to read itself, returns the block digests and hands the
 * buffer back for reuse.
 */
import { parentPort } from 'node:worker_threads';
import { BlockDigester } from './blkhash.js';
import { FILE_PIECE_BYTES, hashFileRange } from './file-range.js';
import type { HashReply, HashRequest } from './pool.js';

const digesters = new Map<string, BlockDigester>();
/** This worker's piece buffer for file ranges (reused: it stays in the core's cache). */
let scratch: Buffer | undefined;

function digesterFor(algorithm: string, blockSize: number): BlockDigester {
  const key = `${algorithm}/${blockSize}`;
  let d = digesters.get(key);
  if (!d) {
    d = new BlockDigester(algorithm, blockSize);
    digesters.set(key, d);
  }
  return d;
}

function answer(req: HashRequest): { reply: HashReply; transfer: ArrayBuffer[] } {
  const transfer: ArrayBuffer[] = req.buffer instanceof ArrayBuffer ? [req.buffer] : [];
  const d = digesterFor(req.algorithm, req.blockSize);
  if (req.file) {
    scratch ??= Buffer.allocUnsafe(FILE_PIECE_BYTES);
    const r = hashFileRange(d, req.file, req.length, scratch);
    if ('ended' in r) {
      const error = `${req.file.name}: file ended at ${r.ended}`;
      return { reply: { id: req.id, buffer: req.buffer, error, ended: r.ended }, transfer };
    }
    transfer.push(r.digests.buffer as ArrayBuffer);
    const reply = { id: req.id, buffer: req.buffer, digests: r.digests.buffer as ArrayBuffer };
    return { reply: { ...reply, hashedBytes: r.hashedBytes }, transfer };
  }
  const blocks = Math.ceil(req.length / req.blockSize);
  const digests = new Uint8Array(blocks * d.digestLength);
  const hashed = d.hashBlocks(new Uint8Array(req.buffer, 0, req.length), req.length, digests);
  transfer.push(digests.buffer);
  return {
    reply: { id: req.id, buffer: req.buffer, digests: digests.buffer, hashedBytes: hashed },
    transfer,
  };
}

parentPort?.on('message', (req: HashRequest) => {
  let reply: HashReply;
  let transfer: ArrayBuffer[];
  try {
    ({ reply, transfer } = answer(req));
  } catch (err) {
    const where = req.file ? `read error on ${req.file.name} at offset ${req.file.position}: ` : '';
    const error = `${where}${(err as Error)?.message ?? String(err)}`;
    reply = { id: req.id, buffer: req.buffer, error };
    transfer = req.buffer instanceof ArrayBuffer ? [req.buffer] : [];
  }
  parentPort!.postMessage(reply, transfer);
});
// Every module is loaded: the pool may now terminate this thread without leaking the
// descriptor of a module file still being read.
parentPort?.postMessage({ ready: true });
