/**
 * Compressed grains through the decompression engine (src/codec). qemu (zlib compress()) and
 * VMware write zlib-wrapped deflate streams; a bare deflate stream is accepted too.
 */
import { type BatchItem, decodeBatch, Flavour } from '../../codec/engine.js';
import { CorruptImageError } from '../../errors.js';

/** One grain of a batch: its compressed bytes in the span and where its output goes. */
export interface GrainJob {
  at: number;
  size: number;
  to: number;
  where: string;
}

/**
 * Inflates grains of `span` into `dst`, each to exactly `grainBytes` bytes, or to at least
 * `atLeast` bytes when that is given (a grain only partly read). Anything malformed is a
 * CorruptImageError. Returns the bytes the last grain produced.
 */
export async function inflateGrains(
  span: Uint8Array,
  jobs: readonly GrainJob[],
  dst: Uint8Array,
  grainBytes: number,
  atLeast?: number,
): Promise<number> {
  const items: BatchItem[] = jobs.map((j) => ({
    at: j.at,
    size: j.size,
    to: j.to,
    length: grainBytes,
    flavour: Flavour.ZlibOrDeflate,
  }));
  const failure = await decodeBatch(span, items, dst);
  if (!failure) return grainBytes;
  const w = failure.written;
  if (w !== undefined && atLeast !== undefined && jobs.length === 1 && w >= atLeast) return w;
  const why = w === undefined ? failure.message : `inflates to ${w} bytes, not ${grainBytes}`;
  throw new CorruptImageError(
    `${jobs[failure.index]!.where}: compressed grain does not inflate (${why})`,
  );
}

/** Inflates one grain into a new buffer of at most `maxBytes` bytes. */
export async function inflateGrain(
  data: Uint8Array,
  maxBytes: number,
  where: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(maxBytes);
  const n = await inflateGrains(
    data,
    [{ at: 0, size: data.length, to: 0, where }],
    out,
    maxBytes,
    0,
  );
  return out.subarray(0, n);
}
