/**
 * What the vmdk writers share: the sparse extent header, the embedded descriptor and the
 * grain table geometry (VMware "Virtual Disk Format 5.0"; little-endian). Grains are 64 KiB
 * and grain tables hold 512 entries, as qemu-img and VMware make them.
 */
import { randomBytes } from 'node:crypto';
import { UsageError } from '../../../errors.js';
import {
  COMPRESSION_DEFLATE,
  FLAG_COMPRESSED,
  FLAG_MARKERS,
  FLAG_REDUNDANT_GT,
  SECTOR,
  SPARSE_MAGIC,
} from '../header.js';

export type VmdkSubformat = 'monolithicSparse' | 'streamOptimized';

export const GRAIN_SECTORS = 128;
export const GRAIN_SIZE = GRAIN_SECTORS * SECTOR;
export const GTES_PER_GT = 512;
export const GT_BYTES = GTES_PER_GT * 4;
export const GT_SECTORS = GT_BYTES / SECTOR;
export const DESCRIPTOR_SECTOR = 1;
export const DESCRIPTOR_SECTORS = 20;
/** The "valid newline detection" flag: the header carries the four line-ending test bytes. */
const FLAG_NEWLINE_TEST = 1;
/** A header's gdOffset when the grain directory is found through the footer. */
export const GD_AT_END = 0xffffffffffffffffn;
/** Grain table entries are 32-bit sector numbers: data must end below 2 TiB. */
export const MAX_HOST_SECTOR = 0xffffffff;

export interface HeaderFields {
  subformat: VmdkSubformat;
  capacitySectors: number;
  /** Redundant grain directory sector (0 for none). */
  rgdSector: number;
  /** Grain directory sector, or GD_AT_END. */
  gdSector: number | bigint;
  overheadSectors: number;
}

/** Capacity in sectors of a vmdk of `size` bytes (rounded up to 512), checked against limits. */
export function capacityOf(size: number): number {
  const sectors = Math.ceil(size / SECTOR);
  if (sectors > MAX_HOST_SECTOR - 1024 * 1024) {
    throw new UsageError(`${size} bytes is too large for a sparse vmdk (2 TiB at most)`);
  }
  return sectors;
}

export function gtCount(capacitySectors: number): number {
  return Math.ceil(capacitySectors / (GRAIN_SECTORS * GTES_PER_GT));
}

/** Sectors of the grain directory: one 32-bit entry per grain table, in whole sectors. */
export function gdSectorsOf(capacitySectors: number): number {
  return Math.ceil((gtCount(capacitySectors) * 4) / SECTOR);
}

/** A grain table: GTES_PER_GT little-endian grain sectors (0: not allocated). */
export function encodeGrainTable(sectors: ArrayLike<number>): Buffer {
  const gt = Buffer.alloc(GT_BYTES);
  for (let i = 0; i < GTES_PER_GT; i++) gt.writeUInt32LE(sectors[i] ?? 0, i * 4);
  return gt;
}

export function encodeHeader(f: HeaderFields): Buffer {
  const stream = f.subformat === 'streamOptimized';
  const h = Buffer.alloc(SECTOR);
  Buffer.from(SPARSE_MAGIC).copy(h, 0);
  h.writeUInt32LE(stream ? 3 : 1, 4);
  let flags = FLAG_NEWLINE_TEST;
  if (f.rgdSector !== 0) flags |= FLAG_REDUNDANT_GT;
  if (stream) flags |= FLAG_COMPRESSED | FLAG_MARKERS;
  h.writeUInt32LE(flags, 8);
  h.writeBigUInt64LE(BigInt(f.capacitySectors), 12);
  h.writeBigUInt64LE(BigInt(GRAIN_SECTORS), 20);
  h.writeBigUInt64LE(BigInt(DESCRIPTOR_SECTOR), 28);
  h.writeBigUInt64LE(BigInt(DESCRIPTOR_SECTORS), 36);
  h.writeUInt32LE(GTES_PER_GT, 44);
  h.writeBigUInt64LE(BigInt(f.rgdSector), 48);
  h.writeBigUInt64LE(BigInt(f.gdSector), 56);
  h.writeBigUInt64LE(BigInt(f.overheadSectors), 64);
  h[72] = 0; // clean shutdown
  h.write('\n \r\n', 73, 'latin1');
  h.writeUInt16LE(stream ? COMPRESSION_DEFLATE : 0, 77);
  return h;
}

/**
 * The embedded descriptor: one SPARSE extent naming the file itself (`fileName`, the final
 * name), a random CID and an IDE geometry for the guest.
 */
export function encodeDescriptor(
  subformat: VmdkSubformat,
  capacitySectors: number,
  fileName: string,
): Buffer {
  const cid = randomBytes(4).readUInt32LE(0) >>> 0 || 1;
  const cylinders = Math.min(16383, Math.floor(capacitySectors / (16 * 63)));
  const text = [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${cid.toString(16).padStart(8, '0')}`,
    'parentCID=ffffffff',
    `createType="${subformat}"`,
    '',
    '# Extent description',
    `RW ${capacitySectors} SPARSE "${fileName.replace(/"/g, '')}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${cylinders}"`,
    'ddb.geometry.heads = "16"',
    'ddb.geometry.sectors = "63"',
    'ddb.adapterType = "ide"',
    '',
  ].join('\n');
  const buf = Buffer.alloc(DESCRIPTOR_SECTORS * SECTOR);
  if (Buffer.byteLength(text) > buf.length) {
    throw new UsageError(`the vmdk file name '${fileName}' is too long for the descriptor`);
  }
  buf.write(text, 0, 'utf8');
  return buf;
}
