/** Encodes the qcow2 v3 header, its extensions and the backing file name (cluster 0). */
import { UsageError } from '../../../errors.js';

export type Compression = 'deflate' | 'zstd';

export interface HeaderFields {
  clusterBits: number;
  size: number;
  l1Entries: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  compression: Compression;
  backingFile?: string | undefined;
  backingFormat?: string | undefined;
}

const MAGIC = 0x514649fb;
/** v3 header through the compression_type byte, padded to a multiple of 8. */
const HEADER_LENGTH = 112;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_NAMES = 0x6803f857;
const INCOMPAT_COMPRESSION_TYPE = 1n << 3n;
const REFCOUNT_ORDER = 4; // 16-bit refcounts

/** Feature names qemu shows for an image it cannot open (the feature name table). */
const FEATURE_NAMES: [number, number, string][] = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

function pad8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** The header; the feature name table is left out when it does not fit (tiny clusters). */
export function encodeHeader(f: HeaderFields, clusterSize: number): Buffer {
  const full = encode(f, true);
  if (full.length <= clusterSize) return full;
  const small = encode(f, false);
  if (small.length > clusterSize) {
    throw new UsageError(
      `the header and backing file name do not fit in one ${clusterSize}-byte cluster`,
    );
  }
  return small;
}

function encode(f: HeaderFields, withNames: boolean): Buffer {
  const backing = f.backingFile !== undefined ? Buffer.from(f.backingFile, 'utf8') : undefined;
  const format = f.backingFormat !== undefined ? Buffer.from(f.backingFormat, 'utf8') : undefined;
  if (backing && (backing.length === 0 || backing.length > 1023)) {
    throw new UsageError('backing file name must be 1 to 1023 bytes long');
  }
  const names = Buffer.alloc(FEATURE_NAMES.length * 48);
  FEATURE_NAMES.forEach(([type, bit, name], i) => {
    names[i * 48] = type;
    names[i * 48 + 1] = bit;
    names.write(name, i * 48 + 2, 46, 'latin1');
  });
  const exts: [number, Buffer][] = [];
  if (format) exts.push([EXT_BACKING_FORMAT, format]);
  if (withNames) exts.push([EXT_FEATURE_NAMES, names]);
  let length = HEADER_LENGTH;
  for (const [, data] of exts) length += 8 + pad8(data.length);
  length += 8; // end of extensions
  const backingOffset = backing ? length : 0;
  length += backing?.length ?? 0;
  const h = Buffer.alloc(length);
  h.writeUInt32BE(MAGIC, 0);
  h.writeUInt32BE(3, 4);
  h.writeBigUInt64BE(BigInt(backingOffset), 8);
  h.writeUInt32BE(backing?.length ?? 0, 16);
  h.writeUInt32BE(f.clusterBits, 20);
  h.writeBigUInt64BE(BigInt(f.size), 24);
  h.writeUInt32BE(0, 32); // no encryption
  h.writeUInt32BE(f.l1Entries, 36);
  h.writeBigUInt64BE(BigInt(f.l1Offset), 40);
  h.writeBigUInt64BE(BigInt(f.refcountTableOffset), 48);
  h.writeUInt32BE(f.refcountTableClusters, 56);
  // 60: no snapshots, 64: snapshots offset 0
  h.writeBigUInt64BE(f.compression === 'zstd' ? INCOMPAT_COMPRESSION_TYPE : 0n, 72);
  // 80: compatible features, 88: autoclear features: none
  h.writeUInt32BE(REFCOUNT_ORDER, 96);
  h.writeUInt32BE(HEADER_LENGTH, 100);
  h[104] = f.compression === 'zstd' ? 1 : 0;
  let pos = HEADER_LENGTH;
  for (const [type, data] of exts) {
    h.writeUInt32BE(type, pos);
    h.writeUInt32BE(data.length, pos + 4);
    data.copy(h, pos + 8);
    pos += 8 + pad8(data.length);
  }
  pos += 8; // type 0, length 0
  if (backing) backing.copy(h, pos);
  return h;
}
