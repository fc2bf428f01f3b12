/**
 * The decompression engine for compressed clusters (qcow2 deflate and zstd, VMDK grains).
 * Callers hand over a batch: one span of host bytes holding several compressed clusters (read
 * with one host read) and where each cluster goes in a destination buffer. Deflate batches run
 * on the worker pool, one synchronous inflate per cluster straight into its place; a tiny
 * batch is decoded inline instead (a worker round trip costs more than one cluster's inflate).
 * zstd goes to the native binding (asynchronous only, on the libuv pool).
 */
import { DiskpipeError, UsageError } from '../errors.js';
import {
  type BatchFailure,
  type BatchItem,
  decodeDeflateBatch,
  encodeItems,
  Flavour,
} from './batch.js';
import { runOnWorker } from './pool.js';
import { acquireShared, isShared, releaseShared } from './shared-buffers.js';
import { zstdDecompress } from './zstd-native.js';

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

/** Batches decoded so far, by where they ran (for tests and benchmarks: counts, not times). */
export const decodeStats = { inline: 0, worker: 0, zstdFrames: 0 };

/** Decodes every item of a batch into `dst`; resolves with the first failure, if any. */
export async function decodeBatch(
  span: Uint8Array,
  items: readonly BatchItem[],
  dst: Uint8Array,
): Promise<BatchFailure | undefined> {
  const deflate: BatchItem[] = [];
  const zstd: number[] = [];
  let out = 0;
  items.forEach((it, i) => {
    if (it.flavour === Flavour.Zstd) zstd.push(i);
    else {
      deflate.push(it);
      out += it.length;
    }
  });
  const inline = out <= inlineBytes;
  if (deflate.length > 0) decodeStats[inline ? 'inline' : 'worker']++;
  decodeStats.zstdFrames += zstd.length;
  const failures = await Promise.all([
    deflate.length === 0
      ? undefined
      : inline
        ? decodeDeflateBatch(span, encodeItems(deflate), dst)
        : decodeOnWorker(span, deflate, dst),
    zstd.length === 0 ? undefined : decodeZstd(span, items, zstd, dst),
  ]);
  const [d, z] = failures;
  // Report in item order (deflate indexes are into the deflate-only list).
  const fromDeflate = d && { ...d, index: items.indexOf(deflate[d.index]!) };
  if (fromDeflate && z) return fromDeflate.index < z.index ? fromDeflate : z;
  return fromDeflate ?? z;
}

async function decodeOnWorker(
  span: Uint8Array,
  items: BatchItem[],
  dst: Uint8Array,
): Promise<BatchFailure | undefined> {
  const sharedSpan = isShared(span) ? span : copyToShared(span);
  const sharedDst = isShared(dst) ? dst : acquireShared(dst.length);
  try {
    const failure = await runOnWorker(sharedSpan, encodeItems(items), sharedDst);
    if (sharedDst !== dst) {
      for (const it of items) dst.set(sharedDst.subarray(it.to, it.to + it.length), it.to);
    }
    return failure;
  } finally {
    if (sharedSpan !== span) releaseShared(sharedSpan);
    if (sharedDst !== dst) releaseShared(sharedDst);
  }
}

function copyToShared(buf: Uint8Array): Uint8Array {
  const s = acquireShared(buf.length);
  s.set(buf);
  return s;
}

async function decodeZstd(
  span: Uint8Array,
  items: readonly BatchItem[],
  which: number[],
  dst: Uint8Array,
): Promise<BatchFailure | undefined> {
  const results = await Promise.all(
    which.map(async (index): Promise<BatchFailure | undefined> => {
      const it = items[index]!;
      let out: Uint8Array;
      try {
        out = await zstdDecompress(span.subarray(it.at, it.at + it.size));
      } catch (err) {
        if (err instanceof DiskpipeError) throw err;
        return { index, message: (err as Error).message };
      }
      if (out.length !== it.length) {
        return { index, message: `decompresses to ${out.length} bytes`, written: out.length };
      }
      dst.set(out, it.to);
      return undefined;
    }),
  );
  return results.find((r) => r !== undefined);
}
