/**
 * compare: do two images hold the same guest-visible bytes? Both images' extents are walked
 * together: ranges zero on both sides are not read; where one side is zero only the other is
 * read (and must be zero); elsewhere both are read and compared, several requests in flight.
 * An image that is longer must read as zeroes past the shorter one's end (unless strict).
 */
import { withContext } from '../errors.js';
import type { Extent, Image, ProgressListener } from '../image/types.js';
import { throwIfAborted } from '../io/abort.js';
import { ALIGN_FROM_BYTES, RequestBuffers } from '../io/request-buffers.js';
import { firstDifference, firstNonZero } from './copy/blocks.js';
import { resolveRequestOptions } from './copy/options.js';
import { SharedIterator } from './copy/sync.js';

export interface CompareOptions {
  /** Images of different sizes are different (qemu-img compare -s). */
  strict?: boolean;
  /** Largest read request (64 KiB–8 MiB, default 2 MiB). */
  requestSize?: number;
  /** Requests in flight (1–64, default 8). Memory: 2 × requests × size. */
  inFlight?: number;
  /** Phase `compare`: bytes of the longer image compared so far. */
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export type CompareResult =
  | { identical: true; sizeMismatch: boolean }
  /** `offset`: the first byte that differs (or is non-zero past the shorter image). */
  | { identical: false; reason: 'content'; offset: number; sizeMismatch: boolean }
  | { identical: false; reason: 'size'; sizeMismatch: true };

/** A range in which each side is uniformly zero or data. */
interface Segment {
  offset: number;
  length: number;
  aZero: boolean;
  bZero: boolean;
}

/** Walks two extent lists over the same range, yielding ranges where neither changes kind. */
async function* zipExtents(a: AsyncIterable<Extent>, b: AsyncIterable<Extent>) {
  const ia = a[Symbol.asyncIterator]();
  const ib = b[Symbol.asyncIterator]();
  let ea = (await ia.next()).value as Extent | undefined;
  let eb = (await ib.next()).value as Extent | undefined;
  while (ea && eb) {
    const start = Math.max(ea.offset, eb.offset);
    const end = Math.min(ea.offset + ea.length, eb.offset + eb.length);
    if (end > start) yield { offset: start, length: end - start, aZero: ea.zero, bZero: eb.zero };
    if (ea.offset + ea.length === end) ea = (await ia.next()).value as Extent | undefined;
    if (eb && eb.offset + eb.length === end) eb = (await ib.next()).value as Extent | undefined;
  }
  await ia.return?.();
  await ib.return?.();
}

/** Splits segments into requests, dropping ranges that are zero on both sides. */
async function* requests(segments: AsyncIterable<Segment>, size: number) {
  for await (const s of segments) {
    if (s.aZero && s.bZero) continue;
    for (let off = s.offset; off < s.offset + s.length; off += size) {
      yield { ...s, offset: off, length: Math.min(size, s.offset + s.length - off) };
    }
  }
}

async function* allZero(offset: number, length: number): AsyncIterable<Extent> {
  if (length > 0) yield { offset, length, zero: true, hole: true };
}

export async function compareImages(
  a: Image,
  b: Image,
  opts: CompareOptions = {},
): Promise<CompareResult> {
  const { requestSize, inFlight } = resolveRequestOptions(opts);
  const sizeMismatch = a.size !== b.size;
  if (sizeMismatch && opts.strict) return { identical: false, reason: 'size', sizeMismatch };
  const common = Math.min(a.size, b.size);
  const total = Math.max(a.size, b.size);
  // The part both have, then the longer one's tail against zeroes.
  const long = a.size > b.size ? a : b;
  const tailA = a === long;
  const walks: AsyncIterable<Segment>[] = [zipExtents(a.extents(0, common), b.extents(0, common))];
  if (sizeMismatch) {
    const tail = long.extents(common, long.size - common);
    const zeros = allZero(common, long.size - common);
    walks.push(tailA ? zipExtents(tail, zeros) : zipExtents(zeros, tail));
  }
  let mismatch = Number.POSITIVE_INFINITY;
  let done = 0;
  let failure: unknown;
  // One fixed pool (shared memory: compressed clusters decode straight into it), 2 per worker.
  const buffers = new RequestBuffers(2 * inFlight, requestSize, long.size >= ALIGN_FROM_BYTES);
  for (const walk of walks) {
    const items = new SharedIterator<Segment>(requests(walk, requestSize)[Symbol.asyncIterator]());
    const worker = async (index: number) => {
      let bufA: Buffer | undefined;
      let bufB: Buffer | undefined;
      try {
        while (failure === undefined) {
          throwIfAborted(opts.signal, 'compare');
          const next = await items.next();
          // Ranges past a known mismatch cannot change the answer.
          if (!next || next.item.offset >= mismatch) return;
          const s = next.item;
          bufA ??= buffers.get(2 * index);
          bufB ??= buffers.get(2 * index + 1);
          const at = await compareSegment(a, b, s, bufA, bufB);
          if (at >= 0) mismatch = Math.min(mismatch, s.offset + at);
          done += s.length;
          opts.onProgress?.({ phase: 'compare', done, total });
        }
      } catch (err) {
        failure ??= err;
      }
    };
    await Promise.allSettled(Array.from({ length: inFlight }, (_, i) => worker(i)));
    await items.close().catch(() => {});
    if (failure !== undefined) throw failure;
    if (Number.isFinite(mismatch)) {
      return { identical: false, reason: 'content', offset: mismatch, sizeMismatch };
    }
  }
  opts.onProgress?.({ phase: 'compare', done: total, total });
  return { identical: true, sizeMismatch };
}

/** Index of the first differing byte within the segment, or -1. */
async function compareSegment(
  a: Image,
  b: Image,
  s: Segment,
  bufA: Buffer,
  bufB: Buffer,
): Promise<number> {
  const da = bufA.subarray(0, s.length);
  const db = bufB.subarray(0, s.length);
  if (s.aZero) {
    await readFrom(b, db, s.offset);
    return firstNonZero(db);
  }
  if (s.bZero) {
    await readFrom(a, da, s.offset);
    return firstNonZero(da);
  }
  await Promise.all([readFrom(a, da, s.offset), readFrom(b, db, s.offset)]);
  return firstDifference(da, db);
}

async function readFrom(image: Image, buf: Buffer, offset: number): Promise<void> {
  try {
    await image.read(buf, offset);
  } catch (err) {
    const label = (image as { label?: string }).label ?? image.format;
    throw withContext(err, `read error in ${label} at offset ${offset}`);
  }
}
