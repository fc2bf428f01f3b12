/**
 * VHDX on-disk structures ([MS-VHDX] 2.2): the two headers, the region table and the metadata
 * table. All fields are little-endian; every structure carries a CRC-32C.
 */

import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { isPowerOfTwo, view } from '../../io/bytes.js';
import { ascii, readExact, u64 } from '../vhd/bytes.js';
import { checksumValid } from './crc32c.js';
import {
  BAT_REGION,
  FILE_PARAMETERS,
  guidAt,
  LOGICAL_SECTOR_SIZE,
  METADATA_REGION,
  PAGE_83_DATA,
  PARENT_LOCATOR,
  PHYSICAL_SECTOR_SIZE,
  VIRTUAL_DISK_SIZE,
} from './guid.js';

export const MiB = 1024 * 1024;
const HEADER_OFFSETS = [64 * 1024, 128 * 1024];
const REGION_TABLE_OFFSETS = [192 * 1024, 256 * 1024];
const HEADER_BYTES = 4096;
const TABLE_BYTES = 64 * 1024;
const MAX_TABLE_ENTRIES = 2047;

export interface VhdxHeader {
  sequence: bigint;
  logGuid: string;
  logVersion: number;
  logLength: number;
  logOffset: number;
  /** The bytes qemu compares when both headers carry the same sequence number. */
  raw: Uint8Array;
}

function parseHeader(buf: Uint8Array): VhdxHeader | null {
  if (ascii(buf, 0, 4) !== 'head' || !checksumValid(buf, 4)) return null;
  const dv = view(buf);
  if (dv.getUint16(66, true) !== 1) return null;
  const logOffset = dv.getBigUint64(72, true);
  if (logOffset > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return {
    sequence: dv.getBigUint64(8, true),
    logGuid: guidAt(buf, 48),
    logVersion: dv.getUint16(64, true),
    logLength: dv.getUint32(68, true),
    logOffset: Number(logOffset),
    raw: buf.subarray(0, 80),
  };
}

/** The current header: the valid one with the higher sequence number. */
export async function readCurrentHeader(source: ByteSource, label: string): Promise<VhdxHeader> {
  const [a, b] = await Promise.all(
    HEADER_OFFSETS.map(async (at) =>
      parseHeader(await readExact(source, at, HEADER_BYTES, 'header')),
    ),
  );
  if (a && b) {
    if (a.sequence > b.sequence) return a;
    if (b.sequence > a.sequence) return b;
    // Disk2vhd writes two identical headers; differing headers with one sequence are corrupt.
    if (Buffer.compare(a.raw, b.raw) === 0) return a;
    throw new CorruptImageError(`${label}: both headers carry sequence number ${a.sequence}`);
  }
  const h = a ?? b;
  if (!h) throw new CorruptImageError(`${label}: no valid VHDX header (bad signature or checksum)`);
  return h;
}

export interface Region {
  guid: string;
  offset: number;
  length: number;
  required: boolean;
}

function parseRegionTable(buf: Uint8Array, label: string): Region[] | null {
  if (ascii(buf, 0, 4) !== 'regi' || !checksumValid(buf, 4)) return null;
  const dv = view(buf);
  const count = dv.getUint32(8, true);
  if (count > MAX_TABLE_ENTRIES) {
    throw new CorruptImageError(`${label}: region table has ${count} entries`);
  }
  const regions: Region[] = [];
  for (let i = 0; i < count; i++) {
    const at = 16 + i * 32;
    regions.push({
      guid: guidAt(buf, at),
      offset: u64(dv, at + 16, true, `${label}: region offset`),
      length: dv.getUint32(at + 24, true),
      required: (dv.getUint32(at + 28, true) & 1) === 1,
    });
  }
  return regions;
}

/** The region table (first valid copy): where the BAT and the metadata live. */
export async function readRegions(
  source: ByteSource,
  label: string,
): Promise<{ bat: Region; metadata: Region; all: Region[] }> {
  let regions: Region[] | null = null;
  for (const at of REGION_TABLE_OFFSETS) {
    regions = parseRegionTable(await readExact(source, at, TABLE_BYTES, 'region table'), label);
    if (regions) break;
  }
  if (!regions) throw new CorruptImageError(`${label}: no valid region table (bad checksum)`);
  let bat: Region | undefined;
  let metadata: Region | undefined;
  for (const r of regions) {
    if (r.offset % MiB !== 0 || r.offset < MiB || r.length % MiB !== 0 || r.length === 0) {
      throw new CorruptImageError(`${label}: region ${r.guid} is not aligned to 1 MiB`);
    }
    if (r.guid === BAT_REGION || r.guid === METADATA_REGION) {
      if ((r.guid === BAT_REGION ? bat : metadata) !== undefined) {
        throw new CorruptImageError(`${label}: region ${r.guid} appears twice`);
      }
      if (r.guid === BAT_REGION) bat = r;
      else metadata = r;
    } else if (r.required) {
      throw new UnsupportedFeatureError(`${label}: unknown required region ${r.guid}`);
    }
  }
  if (!bat || !metadata) throw new CorruptImageError(`${label}: BAT or metadata region missing`);
  return { bat, metadata, all: regions };
}

/** Throws when two file ranges overlap ([MS-VHDX]: regions, log and header never share bytes). */
export function checkNoOverlap(
  ranges: { what: string; offset: number; length: number }[],
  label: string,
): void {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.offset < prev.offset + prev.length) {
      throw new CorruptImageError(
        `${label}: ${cur.what} overlaps ${prev.what} in the region table`,
      );
    }
  }
}

export interface Metadata {
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
  virtualSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  page83: string;
}

const KNOWN_ITEMS = new Set([
  FILE_PARAMETERS,
  VIRTUAL_DISK_SIZE,
  PAGE_83_DATA,
  LOGICAL_SECTOR_SIZE,
  PHYSICAL_SECTOR_SIZE,
  PARENT_LOCATOR,
]);

/** 64 TiB, the format's largest virtual disk. */
const MAX_VIRTUAL_SIZE = 64 * 1024 * MiB * 1024;

export async function readMetadata(
  source: ByteSource,
  region: Region,
  label: string,
): Promise<Metadata> {
  const table = await readExact(source, region.offset, TABLE_BYTES, 'metadata table');
  if (ascii(table, 0, 8) !== 'metadata') {
    throw new CorruptImageError(`${label}: bad metadata table signature`);
  }
  const dv = view(table);
  const count = dv.getUint16(10, true);
  if (count > MAX_TABLE_ENTRIES) {
    throw new CorruptImageError(`${label}: metadata table has ${count} entries`);
  }
  const items = new Map<string, { offset: number; length: number }>();
  for (let i = 0; i < count; i++) {
    const at = 32 + i * 32;
    const id = guidAt(table, at);
    const offset = dv.getUint32(at + 16, true);
    const length = dv.getUint32(at + 20, true);
    const required = (dv.getUint32(at + 24, true) & 4) !== 0;
    if (items.has(id)) throw new CorruptImageError(`${label}: metadata item ${id} appears twice`);
    if (length > 0 && (offset < TABLE_BYTES || offset + length > region.length)) {
      throw new CorruptImageError(`${label}: metadata item ${id} lies outside the metadata region`);
    }
    if (!KNOWN_ITEMS.has(id) && required) {
      throw new UnsupportedFeatureError(`${label}: unknown required metadata item ${id}`);
    }
    items.set(id, { offset, length });
  }
  const item = async (id: string, what: string, minLength: number) => {
    const it = items.get(id);
    if (!it) throw new CorruptImageError(`${label}: metadata item '${what}' is missing`);
    if (it.length < minLength)
      throw new CorruptImageError(`${label}: metadata item '${what}' is too short`);
    return view(
      await readExact(source, region.offset + it.offset, minLength, `metadata '${what}'`),
    );
  };
  const params = await item(FILE_PARAMETERS, 'file parameters', 8);
  const flags = params.getUint32(4, true);
  const md: Metadata = {
    blockSize: params.getUint32(0, true),
    leaveBlocksAllocated: (flags & 1) !== 0,
    hasParent: (flags & 2) !== 0,
    virtualSize: u64(
      await item(VIRTUAL_DISK_SIZE, 'virtual disk size', 8),
      0,
      true,
      `${label}: virtual disk size`,
    ),
    logicalSectorSize: (await item(LOGICAL_SECTOR_SIZE, 'logical sector size', 4)).getUint32(
      0,
      true,
    ),
    physicalSectorSize: (await item(PHYSICAL_SECTOR_SIZE, 'physical sector size', 4)).getUint32(
      0,
      true,
    ),
    page83: '',
  };
  const p83 = await item(PAGE_83_DATA, 'page 83 data', 16);
  md.page83 = guidAt(new Uint8Array(p83.buffer, p83.byteOffset, 16), 0);
  if (md.hasParent) {
    if (!items.has(PARENT_LOCATOR)) {
      throw new CorruptImageError(`${label}: differencing disk without a parent locator`);
    }
    throw new UnsupportedFeatureError(
      `${label}: differencing VHDX (has a parent) is not supported; merge it into its parent first`,
    );
  }
  if (!isPowerOfTwo(md.blockSize) || md.blockSize < MiB || md.blockSize > 256 * MiB) {
    throw new CorruptImageError(`${label}: invalid block size ${md.blockSize}`);
  }
  for (const [what, v] of [
    ['logical', md.logicalSectorSize],
    ['physical', md.physicalSectorSize],
  ] as const) {
    if (v !== 512 && v !== 4096)
      throw new CorruptImageError(`${label}: invalid ${what} sector size ${v}`);
  }
  if (md.virtualSize % md.logicalSectorSize !== 0 || md.virtualSize > MAX_VIRTUAL_SIZE) {
    throw new CorruptImageError(`${label}: invalid virtual disk size ${md.virtualSize}`);
  }
  return md;
}
