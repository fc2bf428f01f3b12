/**
 * Sizes and table entry encodings for the qcow2 images diskpipe writes: version 3
 * (compat 1.1), 16-bit refcounts, standard (not extended) L2 entries.
 */
import { UsageError } from '../../../errors.js';
import { isPowerOfTwo } from '../../../io/bytes.js';

export const DEFAULT_CLUSTER_SIZE = 64 * 1024;
export const MIN_CLUSTER_SIZE = 512;
export const MAX_CLUSTER_SIZE = 2 * 1024 * 1024;
/** qemu refuses L1 tables larger than 32 MiB. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;

/** L2 entry bits (high 32-bit word). */
export const COPIED = 0x80000000;
export const COMPRESSED = 0x40000000;
/** Standard cluster descriptor bit 0: reads as zeroes (v3). */
export const ZERO_FLAG = 1;

export interface Layout {
  clusterSize: number;
  clusterBits: number;
  /** Virtual size, rounded up to 512 bytes (qemu reads qcow2 sizes in whole sectors). */
  size: number;
  /** Entries per L2 table. */
  l2Entries: number;
  l1Entries: number;
  /** Clusters the L1 table occupies (placed right after the header cluster). */
  l1Clusters: number;
}

export function isValidClusterSize(n: number): boolean {
  return isPowerOfTwo(n) && n >= MIN_CLUSTER_SIZE && n <= MAX_CLUSTER_SIZE;
}

export function planLayout(virtualSize: number, clusterSize = DEFAULT_CLUSTER_SIZE): Layout {
  if (!isValidClusterSize(clusterSize)) {
    throw new UsageError(
      `cluster size ${clusterSize} must be a power of two between 512 bytes and 2 MiB`,
    );
  }
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) {
    throw new UsageError(`invalid image size ${virtualSize}`);
  }
  const size = Math.ceil(virtualSize / 512) * 512;
  const clusterBits = Math.log2(clusterSize);
  const l2Entries = clusterSize / 8;
  const l1Entries = Math.ceil(size / (clusterSize * l2Entries));
  if (l1Entries * 8 > MAX_L1_BYTES) {
    throw new UsageError(
      `image size ${virtualSize} is too large for ${clusterSize}-byte clusters (use a larger cluster size)`,
    );
  }
  const l1Clusters = Math.ceil((l1Entries * 8) / clusterSize);
  return { clusterSize, clusterBits, size, l2Entries, l1Entries, l1Clusters };
}

/** Host offset stored in a standard L1/L2 entry (bits 9–55). */
export function entryOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * 2 ** 32 + (lo & 0xfffffe00) * 1;
}

export function readEntry(table: Buffer, index: number): { hi: number; lo: number } {
  return { hi: table.readUInt32BE(index * 8), lo: table.readUInt32BE(index * 8 + 4) };
}

/** Writes a standard entry: host offset plus flags in the high word. */
export function writeEntry(table: Buffer, index: number, offset: number, hiFlags: number): void {
  const hi = Math.floor(offset / 2 ** 32);
  table.writeUInt32BE((hi | hiFlags) >>> 0, index * 8);
  table.writeUInt32BE((offset % 2 ** 32) >>> 0, index * 8 + 4);
}

/**
 * A compressed cluster descriptor: offset in the low x bits (x = 62 - (cluster_bits - 8)),
 * then the number of 512-byte sectors after the one holding the first byte.
 */
export function writeCompressedEntry(
  table: Buffer,
  index: number,
  clusterBits: number,
  offset: number,
  length: number,
): void {
  const x = 62 - (clusterBits - 8);
  const extraSectors = Math.floor((offset + length - 1) / 512) - Math.floor(offset / 512);
  const value = (1n << 62n) | (BigInt(extraSectors) << BigInt(x)) | BigInt(offset);
  table.writeBigUInt64BE(value, index * 8);
}

/** The host byte range [offset, end) a compressed entry references (whole trailing sector). */
export function compressedRange(
  hi: number,
  lo: number,
  clusterBits: number,
): { offset: number; end: number } {
  const value = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  const x = BigInt(62 - (clusterBits - 8));
  const offset = Number(value & ((1n << x) - 1n));
  const extra = Number((value >> x) & ((1n << BigInt(clusterBits - 8)) - 1n));
  return { offset, end: (Math.floor(offset / 512) + extra + 1) * 512 };
}
