// Small decoding helpers shared by the VHD, VHDX and QED readers.
import { CorruptImageError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';

export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** A 64-bit field as a number; values past 2^53 cannot be offsets or sizes, so they are corrupt. */
export function u64(dv: DataView, at: number, littleEndian: boolean, what: string): number {
  const v = dv.getBigUint64(at, littleEndian);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CorruptImageError(`${what} is absurdly large (${v})`);
  }
  return Number(v);
}

export function ascii(buf: Uint8Array, at: number, length: number): string {
  return String.fromCharCode(...buf.subarray(at, at + length));
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export function isZero(buf: Uint8Array): boolean {
  for (const b of buf) if (b !== 0) return false;
  return true;
}

/** Reads exactly `length` bytes at `offset`, or fails naming what was being read. */
export async function readExact(
  source: ByteSource,
  offset: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  if (offset + length > source.size) {
    throw new CorruptImageError(
      `${source.name}: ${what} at ${offset}+${length} lies past the end of the file (${source.size} bytes)`,
    );
  }
  const buf = new Uint8Array(length);
  const n = await source.read(buf, offset);
  if (n !== length) {
    throw new CorruptImageError(
      `${source.name}: file ended at ${offset + n} while reading ${what}`,
    );
  }
  return buf;
}
