/**
 * The zstd items of an encoded batch (see batch.ts). With the system's libzstd (zstd-lib.ts)
 * each frame decodes synchronously straight into its place; its length is found by libzstd,
 * so an item's size may include qemu's sector padding. Without it, @mongodb-js/zstd (the npm
 * binding: asynchronous only, on the libuv pool) decodes the frames of a batch all at once
 * and each result is checked and copied into place; its items must be exact frames. In a
 * decode worker either way costs the main thread nothing: one answer per batch. libzstd
 * verifies a frame's checksum when the frame carries one (both paths use it).
 */
import { DiskpipeError } from '../errors.js';
import { type BatchFailure, FIELDS, Flavour } from './batch.js';
import { ZstdError, ZstdErrorCode, type ZstdLib } from './zstd-lib.js';
import { zstdDecompress } from './zstd-native.js';

/** Decodes every zstd item with libzstd, in order; returns the first failure, if any. */
export function decodeZstdBatchSync(
  lib: ZstdLib,
  span: Uint8Array,
  items: Int32Array,
  dst: Uint8Array,
): BatchFailure | undefined {
  for (let i = 0; i * FIELDS < items.length; i++) {
    const k = i * FIELDS;
    if (items[k + 4] !== Flavour.Zstd) continue;
    const at = items[k]!;
    const src = span.subarray(at, at + items[k + 1]!);
    const to = items[k + 2]!;
    const length = items[k + 3]!;
    let written: number;
    try {
      const frame = src.subarray(0, lib.frameSize(src));
      written = lib.decompressInto(frame, dst.subarray(to, to + length));
    } catch (err) {
      if (!(err instanceof ZstdError)) throw err;
      if (err.code === ZstdErrorCode.DstSizeTooSmall) {
        return { index: i, message: `decompresses to more than ${length} bytes` };
      }
      return { index: i, message: err.message };
    }
    if (written !== length)
      return { index: i, message: `decompresses to ${written} bytes`, written };
  }
  return undefined;
}

/** Decodes every zstd item with the npm binding; resolves with the first failure (by index). */
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
