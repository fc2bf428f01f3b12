/**
 * The hosted sparse extent header ('KDMV', VMware Virtual Disk Format 1.1 §"Hosted Sparse
 * Extent Header") and the stream-optimized markers. All fields are little-endian; sizes and
 * offsets are in 512-byte sectors.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';

export const SECTOR = 512;

/** 'KDMV' as the first four bytes of a hosted sparse extent. */
export const SPARSE_MAGIC = [0x4b, 0x44, 0x4d, 0x56] as const;
/** 'COWD': the ESX sparse (VMFSSPARSE / VMDK3) extent, which diskpipe does not read. */
export const COWD_MAGIC = [0x43, 0x4f, 0x57, 0x44] as const;
/** seSparse const header magic 0xcafebabe as a little-endian u64. */
export const SESPARSE_MAGIC = [0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0] as const;

export const FLAG_REDUNDANT_GT = 1 << 1;
export const FLAG_ZERO_GRAIN = 1 << 2;
export const FLAG_COMPRESSED = 1 << 16;
export const FLAG_MARKERS = 1 << 17;

export const COMPRESSION_NONE = 0;
export const COMPRESSION_DEFLATE = 1;

export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;

/** Grain table entry meaning "this grain reads as zeroes" (no storage). */
export const GTE_ZERO = 1;

/** Limits that keep hostile headers from asking for absurd memory or arithmetic. */
export const MAX_GRAIN_SECTORS = 1 << 21; // 1 GiB, as qemu
export const MAX_COMPRESSED_GRAIN_SECTORS = 1 << 15; // 16 MiB: a grain is inflated in memory
export const MAX_GTES_PER_GT = 512;
export const MAX_GD_ENTRIES = 1 << 22; // 16 MiB of directory
export const MAX_CAPACITY_SECTORS = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR);

export interface SparseHeader {
  version: number;
  flags: number;
  /** Virtual size of the extent, in sectors. */
  capacity: number;
  grainSectors: number;
  descriptorOffset: number;
  descriptorSize: number;
  gtesPerGt: number;
  rgdOffset: number;
  /** Grain directory sector; `undefined` when the header says it is in the footer. */
  gdOffset: number | undefined;
  overhead: number;
  uncleanShutdown: boolean;
  compressAlgorithm: number;
}

export function hasMagic(buf: Uint8Array, magic: readonly number[], at = 0): boolean {
  if (buf.length < at + magic.length) return false;
  return magic.every((b, i) => buf[at + i] === b);
}

/** Reads a u64 that must be an exact JS number; `undefined` for all-ones (GD_AT_END). */
function u64(view: DataView, at: number, what: string): number | undefined {
  const lo = view.getUint32(at, true);
  const hi = view.getUint32(at + 4, true);
  if (lo === 0xffffffff && hi === 0xffffffff) return undefined;
  if (hi >= 0x200000) throw new CorruptImageError(`VMDK header: ${what} is absurdly large`);
  return hi * 0x100000000 + lo;
}

function definedU64(view: DataView, at: number, what: string): number {
  const v = u64(view, at, what);
  if (v === undefined) throw new CorruptImageError(`VMDK header: ${what} is invalid (all ones)`);
  return v;
}

/** Decodes and checks a 512-byte sparse header (magic included). */
export function parseSparseHeader(buf: Uint8Array): SparseHeader {
  if (buf.length < SECTOR || !hasMagic(buf, SPARSE_MAGIC)) {
    throw new CorruptImageError('VMDK sparse header: bad magic');
  }
  const view = new DataView(buf.buffer, buf.byteOffset, SECTOR);
  const h: SparseHeader = {
    version: view.getUint32(4, true),
    flags: view.getUint32(8, true),
    capacity: definedU64(view, 12, 'capacity'),
    grainSectors: definedU64(view, 20, 'grain size'),
    descriptorOffset: definedU64(view, 28, 'descriptor offset'),
    descriptorSize: definedU64(view, 36, 'descriptor size'),
    gtesPerGt: view.getUint32(44, true),
    rgdOffset: definedU64(view, 48, 'redundant grain directory offset'),
    gdOffset: u64(view, 56, 'grain directory offset'),
    overhead: definedU64(view, 64, 'overhead'),
    uncleanShutdown: view.getUint8(72) !== 0,
    compressAlgorithm: view.getUint16(77, true),
  };
  checkHeader(h);
  return h;
}

function checkHeader(h: SparseHeader): void {
  if (h.version < 1 || h.version > 3) {
    throw new UnsupportedFeatureError(`VMDK sparse extent version ${h.version} is not supported`);
  }
  if (h.compressAlgorithm !== COMPRESSION_NONE && h.compressAlgorithm !== COMPRESSION_DEFLATE) {
    throw new UnsupportedFeatureError(
      `VMDK compression algorithm ${h.compressAlgorithm} is not supported`,
    );
  }
  const compressed = h.compressAlgorithm === COMPRESSION_DEFLATE;
  const maxGrain = compressed ? MAX_COMPRESSED_GRAIN_SECTORS : MAX_GRAIN_SECTORS;
  if (h.grainSectors < 1 || h.grainSectors > maxGrain) {
    throw new CorruptImageError(`VMDK header: invalid grain size ${h.grainSectors} sectors`);
  }
  if (h.gtesPerGt < 1 || h.gtesPerGt > MAX_GTES_PER_GT) {
    throw new CorruptImageError(`VMDK header: invalid grain table size ${h.gtesPerGt} entries`);
  }
  if (h.capacity > MAX_CAPACITY_SECTORS) {
    throw new CorruptImageError(`VMDK header: capacity ${h.capacity} sectors is too large`);
  }
  if (gdEntries(h) > MAX_GD_ENTRIES) {
    throw new CorruptImageError(
      `VMDK header: grain directory of ${gdEntries(h)} entries is too large`,
    );
  }
}

/** Number of grain directory entries (grain tables) the capacity needs. */
export function gdEntries(h: SparseHeader): number {
  const perGt = h.grainSectors * h.gtesPerGt;
  return Math.ceil(h.capacity / perGt);
}

export function isCompressed(h: SparseHeader): boolean {
  return h.compressAlgorithm === COMPRESSION_DEFLATE;
}

/** A stream-optimized metadata marker: {value, size = 0, type}. */
export interface Marker {
  value: number;
  size: number;
  type: number;
}

export function parseMarker(buf: Uint8Array): Marker {
  const view = new DataView(buf.buffer, buf.byteOffset, 16);
  return {
    value: view.getUint32(0, true) + view.getUint32(4, true) * 0x100000000,
    size: view.getUint32(8, true),
    type: view.getUint32(12, true),
  };
}
