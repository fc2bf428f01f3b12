import { CorruptImageError } from '../../errors.js';
import type { Image } from '../../image/types.js';

/** Largest single metadata read a probe may ask for (bitmaps, descriptor blocks, FAT pieces). */
export const MAX_METADATA_READ = 1 << 20;

/**
 * Reads from one partition of an image, bounds-checked: image metadata that points outside
 * its partition is corrupt, and reported as such rather than read.
 */
export class PartReader {
  constructor(
    private readonly image: Image,
    readonly start: number,
    readonly length: number,
  ) {}

  async bytes(offset: number, length: number): Promise<Uint8Array> {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      length > MAX_METADATA_READ ||
      offset + length > this.length
    ) {
      throw new CorruptImageError(
        `metadata read ${offset}+${length} lies outside its partition (${this.length} bytes)`,
      );
    }
    const buf = new Uint8Array(length);
    if (length > 0) await this.image.read(buf, this.start + offset);
    return buf;
  }
}

/** A little-endian 64-bit field, or Infinity when it does not fit in a safe integer. */
export function u64(dv: DataView, at: number): number {
  const lo = dv.getUint32(at, true);
  const hi = dv.getUint32(at + 4, true);
  const n = hi * 2 ** 32 + lo;
  return Number.isSafeInteger(n) ? n : Number.POSITIVE_INFINITY;
}

export function ascii(buf: Uint8Array, at: number, length: number): string {
  return String.fromCharCode(...buf.subarray(at, at + length));
}

/** A big-endian 64-bit field (XFS), or Infinity when it does not fit in a safe integer. */
export function u64be(dv: DataView, at: number): number {
  const n = dv.getUint32(at) * 2 ** 32 + dv.getUint32(at + 4);
  return Number.isSafeInteger(n) ? n : Number.POSITIVE_INFINITY;
}
