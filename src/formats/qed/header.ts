/** The QED header (qemu docs/interop/qed_spec). All fields are little-endian. */

import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import { isPowerOfTwo, view } from '../../io/bytes.js';
import { u64 } from '../vhd/bytes.js';

export const QED_MAGIC = 0x00444551; // "QED\0"
export const HEADER_BYTES = 64;

export const F_BACKING_FILE = 0x01n;
export const F_NEED_CHECK = 0x02n;
export const F_BACKING_FORMAT_NO_PROBE = 0x04n;
const KNOWN_FEATURES = F_BACKING_FILE | F_NEED_CHECK | F_BACKING_FORMAT_NO_PROBE;

export interface QedHeader {
  clusterSize: number;
  /** L1/L2 table size in clusters. */
  tableSize: number;
  /** Clusters before the first regular cluster. */
  headerSize: number;
  features: bigint;
  l1TableOffset: number;
  imageSize: number;
  backingNameOffset: number;
  backingNameSize: number;
}

export function isQed(head: Uint8Array): boolean {
  return head.length >= HEADER_BYTES && view(head).getUint32(0, true) === QED_MAGIC;
}

/** Decodes and checks the header against the spec's limits (as qemu's open does). */
export function parseHeader(buf: Uint8Array, label: string): QedHeader {
  const dv = view(buf);
  if (dv.getUint32(0, true) !== QED_MAGIC) {
    throw new CorruptImageError(`${label}: not a QED image (bad magic)`);
  }
  const h: QedHeader = {
    clusterSize: dv.getUint32(4, true),
    tableSize: dv.getUint32(8, true),
    headerSize: dv.getUint32(12, true),
    features: dv.getBigUint64(16, true),
    l1TableOffset: u64(dv, 40, true, `${label}: L1 table offset`),
    imageSize: u64(dv, 48, true, `${label}: image size`),
    backingNameOffset: dv.getUint32(56, true),
    backingNameSize: dv.getUint32(60, true),
  };
  const unknown = h.features & ~KNOWN_FEATURES;
  if (unknown !== 0n) {
    throw new UnsupportedFeatureError(
      `${label}: unsupported QED features 0x${unknown.toString(16)}`,
    );
  }
  if (!isPowerOfTwo(h.clusterSize) || h.clusterSize < 4096 || h.clusterSize > 64 * 1024 * 1024) {
    throw new CorruptImageError(`${label}: invalid cluster size ${h.clusterSize}`);
  }
  if (!isPowerOfTwo(h.tableSize) || h.tableSize > 16) {
    throw new CorruptImageError(`${label}: invalid table size ${h.tableSize}`);
  }
  if (h.headerSize === 0 || h.headerSize * h.clusterSize > 0xffffffff) {
    throw new CorruptImageError(`${label}: invalid header size ${h.headerSize}`);
  }
  const entries = (h.tableSize * h.clusterSize) / 8;
  const maxImage = entries * entries * h.clusterSize;
  if (h.imageSize % 512 !== 0 || h.imageSize > maxImage) {
    throw new CorruptImageError(`${label}: invalid image size ${h.imageSize}`);
  }
  if (
    h.features & F_BACKING_FILE &&
    h.backingNameOffset + h.backingNameSize > h.headerSize * h.clusterSize
  ) {
    throw new CorruptImageError(`${label}: backing file name lies outside the header`);
  }
  return h;
}
