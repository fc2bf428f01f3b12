/**
 * The qcow2 header and its extensions (docs/interop/qcow2.txt): decoded from the first cluster
 * and validated field by field, so the rest of the reader can trust every number it uses.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import { view } from '../../io/bytes.js';

export const QCOW_MAGIC = 0x514649fb; // 'QFI\xfb'

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** Limits qemu also applies: they bound every table we allocate. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
const MAX_BACKING_NAME = 1023;
const MAX_FORMAT_NAME = 15;
const MAX_DATA_FILE_NAME = 4095;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
const INCOMPAT_KNOWN = 0x1fn;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

const EXT_END = 0;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_TABLE = 0x6803f857;
const EXT_BITMAPS = 0x23852875;
const EXT_CRYPTO = 0x0537be77;
const EXT_DATA_FILE = 0x44415441;

export type CompressionType = 'zlib' | 'zstd';

export interface FeatureName {
  type: number; // 0 incompatible, 1 compatible, 2 autoclear
  bit: number;
  name: string;
}

export interface BitmapsExtension {
  count: number;
  directorySize: number;
  directoryOffset: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** Virtual size in bytes. */
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  refcountOrder: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  headerLength: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  compressionType: CompressionType;
  extendedL2: boolean;
  backingFile?: string;
  backingFormat?: string;
  dataFile?: string;
  featureNames: FeatureName[];
  bitmaps?: BitmapsExtension;
}

/** Bytes to read first: enough for every fixed v3 field we know. */
export const HEADER_PROBE_BYTES = 112;

export function hasQcowMagic(head: Uint8Array): boolean {
  return head.length >= 4 && view(head).getUint32(0) === QCOW_MAGIC;
}

/**
 * Reads what is needed to know how much header to fetch: checks magic, version and cluster
 * bits. Throws a clear error for qcow v1 and for versions or cluster sizes we do not read.
 */
export function peekClusterBits(head: Uint8Array, fileSize: number, who: string): number {
  if (!hasQcowMagic(head)) throw new CorruptImageError(`${who}: not a qcow2 image (bad magic)`);
  if (head.length < 8) throw new CorruptImageError(`${who}: qcow2 header is truncated`);
  const dv = view(head);
  const version = dv.getUint32(4);
  if (version === 1) throw new UnsupportedFeatureError(`${who}: qcow version 1 is not supported`);
  if (version !== 2 && version !== 3) {
    throw new UnsupportedFeatureError(`${who}: qcow2 version ${version} is not supported`);
  }
  if (head.length < 72 || fileSize < 72) {
    throw new CorruptImageError(`${who}: qcow2 header is truncated (file is ${fileSize} bytes)`);
  }
  const bits = dv.getUint32(20);
  if (bits < MIN_CLUSTER_BITS) {
    throw new CorruptImageError(`${who}: invalid cluster_bits ${bits} (must be at least 9)`);
  }
  if (bits > MAX_CLUSTER_BITS) {
    throw new UnsupportedFeatureError(
      `${who}: cluster size 2^${bits} is not supported (the largest is 2 MiB, cluster_bits 21)`,
    );
  }
  return bits;
}

/**
 * Decodes and validates the header from the image's first cluster (`head`, at least
 * min(cluster size, file size) bytes). `fileSize` bounds every table offset.
 */
export function parseHeader(head: Uint8Array, fileSize: number, who: string): Qcow2Header {
  const clusterBits = peekClusterBits(head, fileSize, who);
  const clusterSize = 2 ** clusterBits;
  const dv = view(head);
  const version = dv.getUint32(4) as 2 | 3;
  const field = (name: string, off: number) => u64(dv, off, name, who);

  let headerLength = 72;
  let incompatible = 0n;
  let compatible = 0n;
  let autoclear = 0n;
  let refcountOrder = 4;
  let compressionByte = 0;
  if (version === 3) {
    if (head.length < 104) throw new CorruptImageError(`${who}: qcow2 v3 header is truncated`);
    incompatible = dv.getBigUint64(72);
    compatible = dv.getBigUint64(80);
    autoclear = dv.getBigUint64(88);
    refcountOrder = dv.getUint32(96);
    headerLength = dv.getUint32(100);
    if (headerLength < 104) {
      throw new CorruptImageError(`${who}: qcow2 header length ${headerLength} is too short`);
    }
    if (headerLength > clusterSize || headerLength > head.length) {
      throw new CorruptImageError(
        `${who}: qcow2 header length ${headerLength} exceeds the first cluster`,
      );
    }
    if (headerLength > 104) compressionByte = head[104]!;
  }

  const ext = parseExtensions(head, headerLength, clusterSize, who);

  const unknown = incompatible & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    throw new UnsupportedFeatureError(
      `${who}: unsupported qcow2 incompatible feature(s): ${featureList(unknown, ext.featureNames)}`,
    );
  }

  const cryptMethod = dv.getUint32(32);
  if (cryptMethod === 1) {
    throw new UnsupportedFeatureError(
      `${who}: AES-encrypted qcow2 images (crypt_method 1) are not supported`,
    );
  }
  if (cryptMethod === 2) {
    throw new UnsupportedFeatureError(
      `${who}: LUKS-encrypted qcow2 images (crypt_method 2) are not supported`,
    );
  }
  if (cryptMethod !== 0) {
    throw new UnsupportedFeatureError(`${who}: unknown qcow2 encryption method ${cryptMethod}`);
  }
  if (ext.crypto) {
    throw new UnsupportedFeatureError(
      `${who}: the image has a full disk encryption header; encrypted images are not supported`,
    );
  }

  if (refcountOrder > 6) {
    throw new CorruptImageError(`${who}: invalid refcount order ${refcountOrder} (max 6)`);
  }

  let compressionType: CompressionType = 'zlib';
  if (incompatible & INCOMPAT_COMPRESSION) {
    if (headerLength <= 104 || compressionByte === 0) {
      throw new CorruptImageError(
        `${who}: compression type feature bit is set but no compression type is given`,
      );
    }
  } else if (compressionByte !== 0) {
    throw new CorruptImageError(
      `${who}: compression type ${compressionByte} is set without its incompatible feature bit`,
    );
  }
  if (compressionByte === 1) compressionType = 'zstd';
  else if (compressionByte !== 0) {
    throw new UnsupportedFeatureError(`${who}: unknown qcow2 compression type ${compressionByte}`);
  }

  const extendedL2 = (incompatible & INCOMPAT_EXTL2) !== 0n;
  if (extendedL2 && clusterBits < 14) {
    throw new CorruptImageError(
      `${who}: extended L2 entries need a cluster size of at least 16 KiB (have ${clusterSize})`,
    );
  }

  const size = field('virtual size', 24);
  const l1Size = dv.getUint32(36);
  const l1TableOffset = field('L1 table offset', 40);
  const refcountTableOffset = field('refcount table offset', 48);
  const refcountTableClusters = dv.getUint32(56);
  const nbSnapshots = dv.getUint32(60);
  const snapshotsOffset = field('snapshot table offset', 64);

  const l2Entries = clusterSize / (extendedL2 ? 16 : 8);
  const l1Needed = Math.ceil(size / (clusterSize * l2Entries));
  if (l1Size > MAX_L1_BYTES / 8) {
    throw new CorruptImageError(`${who}: L1 table size ${l1Size} is too large (max 4194304)`);
  }
  if (l1Size < l1Needed) {
    throw new CorruptImageError(
      `${who}: L1 table has ${l1Size} entries, too few for the virtual size ${size} (needs ${l1Needed})`,
    );
  }
  if (l1Needed > 0) {
    checkTable(who, 'L1 table', l1TableOffset, l1Needed * 8, clusterSize, fileSize);
  }
  if (refcountTableClusters > MAX_REFTABLE_BYTES / clusterSize) {
    throw new CorruptImageError(
      `${who}: refcount table of ${refcountTableClusters} clusters is too large`,
    );
  }
  if (refcountTableClusters > 0) {
    checkTable(
      who,
      'refcount table',
      refcountTableOffset,
      refcountTableClusters * clusterSize,
      clusterSize,
      fileSize,
    );
  }
  if (nbSnapshots > MAX_SNAPSHOTS) {
    throw new CorruptImageError(
      `${who}: too many snapshots (${nbSnapshots}, max ${MAX_SNAPSHOTS})`,
    );
  }
  if (nbSnapshots > 0) {
    checkTable(who, 'snapshot table', snapshotsOffset, 40 * nbSnapshots, clusterSize, fileSize);
  }

  const backingFile = parseBackingName(dv, head, clusterSize, who);

  if (incompatible & INCOMPAT_DATA_FILE) {
    if (ext.dataFile === undefined) {
      throw new UnsupportedFeatureError(
        `${who}: the image uses an external data file but does not name it`,
      );
    }
  } else if (autoclear & AUTOCLEAR_DATA_FILE_RAW) {
    throw new CorruptImageError(`${who}: data-file-raw is set but the image has no data file`);
  }

  const header: Qcow2Header = {
    version,
    clusterBits,
    clusterSize,
    size,
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    refcountOrder,
    nbSnapshots,
    snapshotsOffset,
    headerLength,
    incompatible,
    compatible,
    autoclear,
    compressionType,
    extendedL2,
    featureNames: ext.featureNames,
  };
  if (backingFile !== undefined) header.backingFile = backingFile;
  if (ext.backingFormat !== undefined) header.backingFormat = ext.backingFormat;
  if (ext.dataFile !== undefined && incompatible & INCOMPAT_DATA_FILE) {
    header.dataFile = ext.dataFile;
  }
  if (ext.bitmaps && version === 3) header.bitmaps = ext.bitmaps;
  return header;
}

interface Extensions {
  backingFormat?: string;
  dataFile?: string;
  featureNames: FeatureName[];
  bitmaps?: BitmapsExtension;
  crypto: boolean;
}

/** Walks the header extensions between the header and the end of the first cluster. */
function parseExtensions(
  head: Uint8Array,
  start: number,
  clusterSize: number,
  who: string,
): Extensions {
  const dv = view(head);
  const end = Math.min(clusterSize, head.length);
  const out: Extensions = { featureNames: [], crypto: false };
  let pos = start;
  while (pos + 8 <= end) {
    const type = dv.getUint32(pos);
    const len = dv.getUint32(pos + 4);
    if (type === EXT_END) break;
    const data = pos + 8;
    if (len > end - data) {
      throw new CorruptImageError(
        `${who}: header extension 0x${type.toString(16)} (${len} bytes) overflows the first cluster`,
      );
    }
    const bytes = head.subarray(data, data + len);
    switch (type) {
      case EXT_BACKING_FORMAT:
        if (len > MAX_FORMAT_NAME) {
          throw new CorruptImageError(`${who}: backing format name is too long (${len} bytes)`);
        }
        out.backingFormat = text(bytes, who, 'backing format name');
        break;
      case EXT_FEATURE_TABLE:
        for (let i = 0; i + 48 <= len; i += 48) {
          const nameBytes = bytes.subarray(i + 2, i + 48);
          const nul = nameBytes.indexOf(0);
          out.featureNames.push({
            type: bytes[i]!,
            bit: bytes[i + 1]!,
            name: new TextDecoder().decode(nul < 0 ? nameBytes : nameBytes.subarray(0, nul)),
          });
        }
        break;
      case EXT_BITMAPS:
        if (len !== 24) {
          throw new CorruptImageError(`${who}: bitmaps extension has a bad length (${len})`);
        }
        out.bitmaps = {
          count: view(bytes).getUint32(0),
          directorySize: u64(view(bytes), 8, 'bitmap directory size', who),
          directoryOffset: u64(view(bytes), 16, 'bitmap directory offset', who),
        };
        break;
      case EXT_CRYPTO:
        out.crypto = true;
        break;
      case EXT_DATA_FILE:
        if (len > MAX_DATA_FILE_NAME) {
          throw new CorruptImageError(`${who}: data file name is too long (${len} bytes)`);
        }
        out.dataFile = text(bytes, who, 'data file name');
        break;
      default:
        break; // unknown extensions may be ignored (spec)
    }
    pos = data + Math.ceil(len / 8) * 8;
  }
  return out;
}

function parseBackingName(
  dv: DataView,
  head: Uint8Array,
  clusterSize: number,
  who: string,
): string | undefined {
  const offset = dv.getBigUint64(8);
  if (offset === 0n) return undefined;
  const len = dv.getUint32(16);
  if (offset > BigInt(clusterSize)) {
    throw new CorruptImageError(`${who}: backing file name offset ${offset} is outside the header`);
  }
  const off = Number(offset);
  if (len > Math.min(MAX_BACKING_NAME, clusterSize - off) || off + len > head.length) {
    throw new CorruptImageError(`${who}: backing file name is too long (${len} bytes)`);
  }
  if (len === 0) throw new CorruptImageError(`${who}: backing file name is empty`);
  return text(head.subarray(off, off + len), who, 'backing file name');
}

/** Names the given incompatible bits, from the image's feature name table where it has them. */
export function featureList(bits: bigint, names: FeatureName[]): string {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if (!(bits & (1n << BigInt(bit)))) continue;
    const named = names.find((f) => f.type === 0 && f.bit === bit);
    out.push(named ? `'${named.name}' (bit ${bit})` : `unknown bit ${bit}`);
  }
  return out.join(', ');
}

function checkTable(
  who: string,
  what: string,
  offset: number,
  bytes: number,
  clusterSize: number,
  fileSize: number,
): void {
  if (offset % clusterSize !== 0) {
    throw new CorruptImageError(`${who}: ${what} offset ${offset} is not cluster aligned`);
  }
  // Offset 0 was reported as 'lies outside the file': it is the header's own cluster.
  if (offset === 0) {
    throw new CorruptImageError(`${who}: ${what} at offset 0 overlaps the qcow2 header`);
  }
  if (offset + bytes > fileSize) {
    throw new CorruptImageError(
      `${who}: ${what} at ${offset} (${bytes} bytes) lies outside the file (${fileSize} bytes)`,
    );
  }
}

function u64(dv: DataView, off: number, name: string, who: string): number {
  const v = dv.getBigUint64(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CorruptImageError(`${who}: ${name} ${v} is too large`);
  }
  return Number(v);
}

function text(bytes: Uint8Array, who: string, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new CorruptImageError(`${who}: ${what} is not valid UTF-8`);
  }
}
