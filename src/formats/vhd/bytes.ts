// Small decoding helpers shared by the VHD, VHDX and QED readers.
import { CorruptImageError } from '../../errors.js';

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

export { readExact } from '../../io/read-exact.js';
