/**
 * The VHD hard disk footer and dynamic disk header (Microsoft "Virtual Hard Disk Image Format
 * Specification"). All fields are big-endian.
 */

import { CorruptImageError } from '../../errors.js';
import { view } from '../../io/bytes.js';
import { ascii, u64 } from './bytes.js';

export const FOOTER_SIZE = 512;
export const DYNAMIC_HEADER_SIZE = 1024;

export const DISK_FIXED = 2;
export const DISK_DYNAMIC = 3;
export const DISK_DIFFERENCING = 4;

/** 2040 GiB, in sectors: qemu's largest VHD. */
const MAX_SECTORS = 0xff000000;
/** 65535 cylinders x 16 heads x 255 sectors: the largest CHS geometry. */
const MAX_GEOMETRY = 65535 * 16 * 255;

export interface VhdFooter {
  /** 0xFFFFFFFFFFFFFFFF (fixed disks) or the offset of the dynamic disk header. */
  dataOffset: bigint;
  creatorApp: string;
  creatorOs: string;
  creatorVersion: number;
  currentSize: bigint;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  diskType: number;
  uniqueId: Uint8Array;
  savedState: boolean;
}

export function hasCookie(buf: Uint8Array, cookie: string): boolean {
  return buf.length >= cookie.length && ascii(buf, 0, cookie.length) === cookie;
}

/** One's complement of the byte sum, the checksum field counted as zero. */
export function vhdChecksum(buf: Uint8Array, checksumAt: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) {
    if (i < checksumAt || i >= checksumAt + 4) sum += buf[i]!;
  }
  return ~sum >>> 0;
}

/** Decodes a footer whose cookie was found; null when its checksum is wrong. */
export function parseFooter(buf: Uint8Array): VhdFooter | null {
  const dv = view(buf);
  if (vhdChecksum(buf, 64) !== dv.getUint32(64)) return null;
  return {
    dataOffset: dv.getBigUint64(16),
    creatorApp: ascii(buf, 28, 4),
    creatorVersion: dv.getUint32(32),
    creatorOs: ascii(buf, 36, 4),
    currentSize: dv.getBigUint64(48),
    cylinders: dv.getUint16(56),
    heads: buf[58]!,
    sectorsPerTrack: buf[59]!,
    diskType: dv.getUint32(60),
    uniqueId: buf.slice(68, 84),
    savedState: buf[84] !== 0,
  };
}

/** Creator applications whose images mean `current_size`, not the CHS geometry (qemu's table). */
const CURRENT_SIZE_CREATORS = new Set(['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']);

/**
 * The guest-visible size, decided as qemu does: Virtual PC (and qemu without force_size) use
 * the CHS geometry; Hyper-V, disk2vhd, XenServer and qemu with force_size use current_size, as
 * does any image whose geometry is the maximum (its size could not be expressed in CHS).
 */
export function virtualSize(f: VhdFooter): { size: number; from: 'chs' | 'current-size' } {
  const chs = f.cylinders * f.heads * f.sectorsPerTrack;
  const useCurrent = CURRENT_SIZE_CREATORS.has(f.creatorApp) || chs === MAX_GEOMETRY;
  const sectors = useCurrent ? f.currentSize / 512n : BigInt(chs);
  if (sectors > BigInt(MAX_SECTORS)) {
    throw new CorruptImageError(
      `disk size ${sectors * 512n} is larger than the VHD limit of 2040 GiB`,
    );
  }
  return { size: Number(sectors) * 512, from: useCurrent ? 'current-size' : 'chs' };
}

export interface ParentLocator {
  platform: string;
  length: number;
  offset: number;
}

export interface DynamicHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
  parentUuid: Uint8Array;
  parentName: string;
  locators: ParentLocator[];
}

export function parseDynamicHeader(buf: Uint8Array, where: string): DynamicHeader {
  const dv = view(buf);
  if (!hasCookie(buf, 'cxsparse')) {
    throw new CorruptImageError(`${where}: no 'cxsparse' dynamic disk header`);
  }
  if (vhdChecksum(buf, 36) !== dv.getUint32(36)) {
    throw new CorruptImageError(`${where}: dynamic disk header checksum mismatch`);
  }
  const locators: ParentLocator[] = [];
  for (let i = 0; i < 8; i++) {
    const at = 576 + i * 24;
    const code = dv.getUint32(at);
    if (code === 0) continue;
    locators.push({
      platform: ascii(buf, at, 4),
      length: dv.getUint32(at + 8),
      offset: u64(dv, at + 16, false, `${where}: parent locator offset`),
    });
  }
  return {
    tableOffset: u64(dv, 16, false, `${where}: BAT offset`),
    maxTableEntries: dv.getUint32(28),
    blockSize: dv.getUint32(32),
    parentUuid: buf.slice(40, 56),
    parentName: decodeUtf16(buf.subarray(64, 576), false),
    locators,
  };
}

/** A NUL-terminated UTF-16 string. */
export function decodeUtf16(buf: Uint8Array, littleEndian: boolean): string {
  const dv = view(buf);
  let out = '';
  for (let i = 0; i + 1 < buf.length; i += 2) {
    const c = dv.getUint16(i, littleEndian);
    if (c === 0) break;
    out += String.fromCharCode(c);
  }
  return out;
}

export function formatUuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
