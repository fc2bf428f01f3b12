/**
 * Raw access to a qcow2 file's metadata for the commands that inspect or edit it in place
 * (check, resize): the header, entry decoding and refcount fields of any width.
 */
import { CorruptImageError } from '../../errors.js';
import {
  HEADER_PROBE_BYTES,
  parseHeader,
  peekClusterBits,
  type Qcow2Header,
} from '../../formats/qcow2/header.js';
import type { ByteSource } from '../../image/types.js';

/** Offset bits of L1, L2 and refcount table entries (bits 9-55). */
export const OFFSET_MASK = 0x00fffffffffffe00n;
export const COPIED = 1n << 63n;
export const COMPRESSED = 1n << 62n;
export const ZERO = 1n;

export async function readHeader(source: ByteSource): Promise<Qcow2Header> {
  const probe = await readZeroFilled(source, 0, Math.min(HEADER_PROBE_BYTES, source.size));
  const bits = peekClusterBits(probe, source.size, source.name);
  const head = await readZeroFilled(source, 0, Math.min(2 ** bits, source.size));
  return parseHeader(head, source.size, source.name);
}

/** Reads `length` bytes; what lies past the end of the file reads as zeroes (as in qemu). */
export async function readZeroFilled(
  source: ByteSource,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  if (offset < source.size)
    await source.read(buf.subarray(0, Math.min(length, source.size - offset)), offset);
  return buf;
}

/** The table entries of a buffer of big-endian u64s. */
export function entries(buf: Uint8Array): BigUint64Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new BigUint64Array(buf.length >> 3);
  for (let i = 0; i < out.length; i++) out[i] = dv.getBigUint64(i * 8);
  return out;
}

/** An offset taken from a masked entry: at most 2^56, so a safe number. */
export function offsetOf(entry: bigint, mask = OFFSET_MASK): number {
  return Number(entry & mask);
}

/** Refcount fields of 2^order bits, packed as the spec says (big-endian for 16 bits and up). */
export class RefcountCodec {
  readonly bits: number;
  readonly perBlock: number;
  readonly max: bigint;

  constructor(
    order: number,
    readonly clusterSize: number,
  ) {
    this.bits = 2 ** order;
    this.perBlock = (clusterSize * 8) / this.bits;
    this.max = (1n << BigInt(this.bits)) - 1n;
  }

  get(block: Uint8Array, index: number): bigint {
    const b = this.bits;
    if (b < 8) {
      const bit = index * b;
      return BigInt((block[bit >> 3]! >> (bit & 7)) & ((1 << b) - 1));
    }
    const bytes = b / 8;
    let v = 0n;
    for (let k = 0; k < bytes; k++) v = (v << 8n) | BigInt(block[index * bytes + k]!);
    return v;
  }

  /** The refcount as a number (exact up to 2^53; enough to compare with reference counts). */
  getNumber(block: Uint8Array, index: number): number {
    const b = this.bits;
    if (b < 8) {
      const bit = index * b;
      return (block[bit >> 3]! >> (bit & 7)) & ((1 << b) - 1);
    }
    const bytes = b / 8;
    let v = 0;
    for (let k = 0; k < bytes; k++) v = v * 256 + block[index * bytes + k]!;
    return v;
  }

  set(block: Uint8Array, index: number, value: bigint): void {
    if (value < 0n || value > this.max) {
      throw new CorruptImageError(`refcount ${value} does not fit in ${this.bits} bits`);
    }
    const b = this.bits;
    if (b < 8) {
      const bit = index * b;
      const mask = ((1 << b) - 1) << (bit & 7);
      block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((Number(value) << (bit & 7)) & mask);
      return;
    }
    const bytes = b / 8;
    let v = value;
    for (let k = bytes - 1; k >= 0; k--) {
      block[index * bytes + k] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
}
