/**
 * The zstd items of an encoded batch (see batch.ts). @mongodb-js/zstd has only an asynchronous
 * decompress (on the libuv pool; Node 20 has no zlib zstd), so the frames of a batch are all
 * started at once and each result is checked and set into place. In a decode worker this
 * costs the main thread nothing: it sees one answer per batch, not one per cluster. libzstd
 * verifies a frame's checksum when the frame carries one.
 */
import { DiskpipeError } from '../errors.js';
import { type BatchFailure, FIELDS, Flavour } from './batch.js';
import { zstdDecompress } from './zstd-native.js';

/** Decodes every zstd item; resolves with the first failure (by item index), if any. */
export async function decodeZstdBatch(
  span: Uint8Array,
  items: Int32Array,
  dst: Uint8Array,
): Promise<BatchFailure | undefined> {
  const jobs: Promise<BatchFailure | undefined>[] = [];
  for (let i = 0; i * FIELDS < items.length; i++) {
    const k = i * FIELDS;
    if (items[k + 4] !== Flavour.Zstd) continue;
    const at = items[k]!;
    const size = items[k + 1]!;
    const to = items[k + 2]!;
    const length = items[k + 3]!;
    jobs.push(decodeOne(span.subarray(at, at + size), dst, to, length, i));
  }
  const results = await Promise.all(jobs);
  return results.find((r) => r !== undefined);
}

async function decodeOne(
  frame: Uint8Array,
  dst: Uint8Array,
  to: number,
  length: number,
  index: number,
): Promise<BatchFailure | undefined> {
  let out: Uint8Array;
  try {
    out = await zstdDecompress(frame);
  } catch (err) {
    // A binding that cannot load is not a property of this frame.
    if (err instanceof DiskpipeError) throw err;
    return { index, message: (err as Error).message };
  }
  if (out.length !== length) {
    return { index, message: `decompresses to ${out.length} bytes`, written: out.length };
  }
  dst.set(out, to);
  return undefined;
}

/** Whether an encoded batch holds any zstd item. */
export function hasZstd(items: Int32Array): boolean {
  for (let k = 4; k < items.length; k += FIELDS) if (items[k] === Flavour.Zstd) return true;
  return false;
}
