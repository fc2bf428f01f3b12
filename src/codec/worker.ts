/**
 * A decode worker: runs batches sent by pool.ts, writing into the shared destination. Deflate
 * items decode synchronously; zstd items too with libzstd, else they go to the npm binding
 * (asynchronous) and decode while the deflate items do.
 */
import { readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { withMappedRange } from '../io/mapped-file.js';
import { type BatchFailure, decodeDeflateBatch } from './batch.js';
import { decodeZstdBatch, decodeZstdBatchSync, hasZstd } from './zstd-batch.js';
import { type ZstdLib, zstdLib, zstdLibStatus } from './zstd-lib.js';

/** Where the worker reads the span itself: a file descriptor of this process. */
export interface HostRead {
  fd: number;
  position: number;
  /** The file's name, for errors. */
  name: string;
  /**
   * Decode straight from a mapping of the file (io/mapped-file.ts) when the batch decodes
   * synchronously, instead of reading the span: set by a caller that may use native calls.
   */
  mapped?: boolean | undefined;
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

/** The first failing item of a batch decoded synchronously (deflate, and zstd with libzstd). */
function decodeSync(lib: ZstdLib | undefined, span: Uint8Array, req: DecodeRequest) {
  const z = lib ? decodeZstdBatchSync(lib, span, req.items, req.dst) : undefined;
  return first(decodeDeflateBatch(span, req.items, req.dst), z);
}

parentPort?.on('message', (req: DecodeRequest) => {
  const reply = (r: DecodeReply) => parentPort!.postMessage(r);
  const lib = req.zstd === 'lib' ? zstdLib() : undefined;
  if (lib === null) {
    reply({ id: req.id, fatal: `zstd data: ${zstdLibStatus()} in a decode worker` });
    return;
  }
  const sync = lib !== undefined || !hasZstd(req.items);
  let bytesRead: number | undefined;
  if (req.read) {
    const read = req.read;
    try {
      if (sync && read.mapped) {
        // The compressed bytes are decoded where they lie in the page cache: no span copy.
        const done = withMappedRange(read.fd, read.position, req.span.length, (bytes) => ({
          failure: decodeSync(lib, bytes, req),
        }));
        if (done) {
          reply({ id: req.id, failure: done.failure, bytesRead: req.span.length });
          return;
        }
      }
      bytesRead = fill(req.span, read);
    } catch (err) {
      reply({
        id: req.id,
        readError: `read error on ${read.name} at offset ${read.position}: ${(err as Error).message}`,
      });
      return;
    }
    if (bytesRead < req.span.length) {
      reply({ id: req.id, bytesRead });
      return;
    }
  }
  if (sync) {
    reply({ id: req.id, failure: decodeSync(lib, req.span, req), bytesRead });
    return;
  }
  const zstd = decodeZstdBatch(req.span, req.items, req.dst);
  // The zstd promise settles only after the deflate pass: no unhandled rejection meanwhile.
  zstd.catch(() => {});
  const deflate = decodeDeflateBatch(req.span, req.items, req.dst);
  zstd.then(
    (z) => reply({ id: req.id, failure: first(deflate, z), bytesRead }),
    (err: unknown) => reply({ id: req.id, fatal: (err as Error).message }),
  );
});
// Every module is loaded: the pool may now terminate this thread without leaking the
// descriptor of a module file still being read (Node does not close it on terminate).
parentPort?.postMessage({ ready: true });
