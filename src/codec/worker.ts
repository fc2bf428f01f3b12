/**
 * A decode worker: runs batches sent by pool.ts, writing into the shared destination. Deflate
 * items decode synchronously; zstd items too with libzstd, else they go to the npm binding
 * (asynchronous) and decode while the deflate items do.
 */
import { readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { type BatchFailure, decodeDeflateBatch } from './batch.js';
import { decodeZstdBatch, decodeZstdBatchSync, hasZstd } from './zstd-batch.js';
import { zstdLib, zstdLibStatus } from './zstd-lib.js';

/** Where the worker reads the span itself: a file descriptor of this process. */
export interface HostRead {
  fd: number;
  position: number;
  /** The file's name, for errors. */
  name: string;
}

export interface DecodeRequest {
  id: number;
  span: Uint8Array;
  items: Int32Array;
  dst: Uint8Array;
  read?: HostRead | undefined;
  /**
   * How zstd items decode: 'lib' (the system's libzstd, chosen by the calling thread, which
   * then may leave sector padding in an item) or 'binding' (the npm package; exact frames).
   */
  zstd: ZstdDecoder;
}

export type ZstdDecoder = 'lib' | 'binding';

/** The answer: the first failing item, or `fatal` when the codec itself is unusable. */
export interface DecodeReply {
  id: number;
  failure?: BatchFailure | undefined;
  fatal?: string;
  /** With a HostRead: bytes read (less than the span: end of file, nothing decoded). */
  bytesRead?: number;
  readError?: string;
}

/** Fills `span` from the file; returns the bytes read (short only at the end of the file). */
function fill(span: Uint8Array, read: HostRead): number {
  let done = 0;
  while (done < span.length) {
    const n = readSync(read.fd, span, done, span.length - done, read.position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function first(a: BatchFailure | undefined, b: BatchFailure | undefined) {
  if (a && b) return a.index < b.index ? a : b;
  return a ?? b;
}

parentPort?.on('message', (req: DecodeRequest) => {
  const reply = (r: DecodeReply) => parentPort!.postMessage(r);
  let bytesRead: number | undefined;
  if (req.read) {
    try {
      bytesRead = fill(req.span, req.read);
    } catch (err) {
      const at = req.read.position;
      reply({
        id: req.id,
        readError: `read error on ${req.read.name} at offset ${at}: ${(err as Error).message}`,
      });
      return;
    }
    if (bytesRead < req.span.length) {
      reply({ id: req.id, bytesRead });
      return;
    }
  }
  const lib = req.zstd === 'lib' ? zstdLib() : undefined;
  if (lib === null) {
    reply({ id: req.id, fatal: `zstd data: ${zstdLibStatus()} in a decode worker` });
    return;
  }
  if (lib) {
    const z = decodeZstdBatchSync(lib, req.span, req.items, req.dst);
    reply({
      id: req.id,
      failure: first(decodeDeflateBatch(req.span, req.items, req.dst), z),
      bytesRead,
    });
    return;
  }
  const zstd = hasZstd(req.items) ? decodeZstdBatch(req.span, req.items, req.dst) : undefined;
  // The zstd promise settles only after the deflate pass: no unhandled rejection meanwhile.
  zstd?.catch(() => {});
  const deflate = decodeDeflateBatch(req.span, req.items, req.dst);
  if (!zstd) {
    reply({ id: req.id, failure: deflate, bytesRead });
    return;
  }
  zstd.then(
    (z) => reply({ id: req.id, failure: first(deflate, z), bytesRead }),
    (err: unknown) => reply({ id: req.id, fatal: (err as Error).message }),
  );
});
// Every module is loaded: the pool may now terminate this thread without leaking the
// descriptor of a module file still being read (Node does not close it on terminate).
parentPort?.postMessage({ ready: true });
