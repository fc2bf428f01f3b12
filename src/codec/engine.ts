/**
 * The decompression engine for compressed clusters (qcow2 deflate and zstd, VMDK grains).
 * Callers hand over a batch: one span of host bytes holding several compressed clusters (read
 * with one host read) and where each cluster goes in a destination buffer. Batches run on the
 * worker pool: deflate items inflate synchronously straight into their place, and so do zstd
 * frames with the system's libzstd (else they go to the npm binding from the worker,
 * asynchronously), so the calling thread sees one answer per batch. A tiny batch is decoded
 * inline instead (a worker round trip costs more than one cluster's decode).
 */
import { UsageError } from '../errors.js';
import {
  type BatchFailure,
  type BatchItem,
  decodeDeflateBatch,
  encodeItems,
  Flavour,
} from './batch.js';
import { runOnWorker, type WorkerResult } from './pool.js';
import { acquireShared, isShared, releaseShared } from './shared-buffers.js';
import type { HostRead, ZstdDecoder } from './worker.js';
import { decodeZstdBatch, decodeZstdBatchSync } from './zstd-batch.js';
import { zstdLib } from './zstd-lib.js';

export type { BatchFailure, BatchItem } from './batch.js';
export { Flavour } from './batch.js';
export { closeDecodePool } from './pool.js';
export { acquireShared, releaseShared } from './shared-buffers.js';

/**
 * Batches whose output is at most this many bytes are decoded on the calling thread. One
 * 64 KiB cluster inflates in ~0.2 ms here; a worker round trip (post, wake, answer) costs
 * ~0.1 ms of main-thread time plus the wake-up latency, so one cluster is cheaper inline.
 */
let inlineBytes = 64 * 1024;

/**
 * Moves the inline/worker threshold (bytes of output per batch). Process-wide, as the decode
 * pool is; for benchmarks (the CLI reads DISKPIPE_INLINE_DECODE).
 */
export function setInlineDecodeBytes(bytes: number): void {
  if (!(bytes >= 0)) throw new UsageError(`invalid inline decode threshold ${bytes}`);
  inlineBytes = bytes;
}

/**
 * Batches decoded so far, by where they ran, and zstd frames (all, and those sent to libzstd)
 * — for tests and benchmarks: counts, not times.
 */
export const decodeStats = {
  inline: 0,
  worker: 0,
  zstdFrames: 0,
  zstdLibFrames: 0,
  workerReads: 0,
};

/**
 * Whether zstd frames decode with the system's libzstd (then a zstd item's size may include
 * trailing padding: libzstd finds where the frame ends), rather than the npm binding (whose
 * items must be exact frames).
 */
export function zstdFindsFrameEnds(): boolean {
  return zstdLib() !== null;
}

function countZstd(items: readonly BatchItem[], decoder: ZstdDecoder): void {
  for (const it of items) {
    if (it.flavour !== Flavour.Zstd) continue;
    decodeStats.zstdFrames++;
    if (decoder === 'lib') decodeStats.zstdLibFrames++;
  }
}

/** Whether a batch with this many output bytes is decoded on the calling thread. */
export function decodesInline(outputBytes: number): boolean {
  return outputBytes <= inlineBytes;
}

/**
 * Reads a batch's span from a local file *on a decode worker* and decodes it there: the
 * calling thread neither copies the compressed bytes nor decodes them. `span` (shared memory,
 * from acquireShared) receives file[position, position + span.length). Resolves with the
 * bytes read — less than the span only at the end of the file, and then nothing is decoded —
 * and the first failing item. A read error rejects with an IoError naming `file.name`.
 */
export async function readAndDecode(
  file: { fd: number; name: string },
  position: number,
  span: Uint8Array,
  items: readonly BatchItem[],
  dst: Uint8Array,
): Promise<{ bytesRead: number; failure: BatchFailure | undefined }> {
  if (!isShared(span)) throw new TypeError('readAndDecode needs a span from acquireShared');
  decodeStats.worker++;
  decodeStats.workerReads++;
  const zstd = zstdDecoderFor(items);
  countZstd(items, zstd);
  const r = await decodeOnWorker(span, items, dst, zstd, {
    fd: file.fd,
    position,
    name: file.name,
  });
  return { bytesRead: r.bytesRead ?? 0, failure: r.failure };
}

/** Decodes every item of a batch into `dst`; resolves with the first failure, if any. */
export async function decodeBatch(
  span: Uint8Array,
  items: readonly BatchItem[],
  dst: Uint8Array,
): Promise<BatchFailure | undefined> {
  if (items.length === 0) return undefined;
  const decoder = zstdDecoderFor(items);
  countZstd(items, decoder);
  let out = 0;
  for (const it of items) out += it.length;
  if (!decodesInline(out)) {
    decodeStats.worker++;
    return (await decodeOnWorker(span, items, dst, decoder)).failure;
  }
  decodeStats.inline++;
  const encoded = encodeItems(items);
  const lib = decoder === 'lib' ? zstdLib() : null;
  if (lib) {
    const z = decodeZstdBatchSync(lib, span, encoded, dst);
    const deflate = decodeDeflateBatch(span, encoded, dst);
    if (deflate && z) return deflate.index < z.index ? deflate : z;
    return deflate ?? z;
  }
  const zstd = decodeZstdBatch(span, encoded, dst);
  zstd.catch(() => {});
  const deflate = decodeDeflateBatch(span, encoded, dst);
  const z = await zstd;
  if (deflate && z) return deflate.index < z.index ? deflate : z;
  return deflate ?? z;
}

/** libzstd when it loads, for a batch with zstd items (a deflate batch never loads it). */
function zstdDecoderFor(items: readonly BatchItem[]): ZstdDecoder {
  if (!items.some((it) => it.flavour === Flavour.Zstd)) return 'binding';
  return zstdLib() ? 'lib' : 'binding';
}

async function decodeOnWorker(
  span: Uint8Array,
  items: readonly BatchItem[],
  dst: Uint8Array,
  zstd: ZstdDecoder,
  read?: HostRead,
): Promise<WorkerResult> {
  const sharedSpan = isShared(span) ? span : copyToShared(span);
  if (isShared(dst)) {
    try {
      return await runOnWorker(sharedSpan, encodeItems(items), dst, zstd, read);
    } finally {
      if (sharedSpan !== span) releaseShared(sharedSpan);
    }
  }
  // A plain destination: decode into a shared buffer holding only the items' outputs, back
  // to back (not one as large as `dst`: a checksum window is 8 MiB, a batch ~2 MiB), then
  // copy each into place.
  const packed: BatchItem[] = [];
  let bytes = 0;
  for (const it of items) {
    packed.push({ ...it, to: bytes });
    bytes += it.length;
  }
  const staging = acquireShared(bytes);
  try {
    const r = await runOnWorker(sharedSpan, encodeItems(packed), staging, zstd, read);
    if (read === undefined || r.bytesRead === span.length) {
      packed.forEach((p, i) => {
        dst.set(staging.subarray(p.to, p.to + p.length), items[i]!.to);
      });
    }
    return r;
  } finally {
    if (sharedSpan !== span) releaseShared(sharedSpan);
    releaseShared(staging);
  }
}

function copyToShared(buf: Uint8Array): Uint8Array {
  const s = acquireShared(buf.length);
  s.set(buf);
  return s;
}
