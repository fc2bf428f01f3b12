/**
 * The VDI (VirtualBox) header, version 1.1: a 64-byte text banner, the signature, then sizes
 * and offsets (little-endian). Only what a reader needs is decoded.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';

export const VDI_SIGNATURE = 0xbeda107f;
export const VDI_VERSION_1_1 = 0x00010001;
export const HEADER_BYTES = 512;

export const TYPE_DYNAMIC = 1;
export const TYPE_STATIC = 2;
const TYPE_NAMES: Record<number, string> = { 3: 'undo', 4: 'differencing' };

/** Block map entries that are not block numbers. */
export const BLOCK_UNALLOCATED = 0xffffffff;
export const BLOCK_ZERO = 0xfffffffe;

/** Bounds for hostile headers: 8 Mi blocks (32 MiB of map), blocks of 512 B to 64 MiB. */
export const MAX_BLOCKS = 1 << 23;
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 64 << 20;
/** header_size counts from its own field (0x48); 0x180 reaches the parent UUID. */
const MIN_HEADER_SIZE = 0x180;
const MAX_HEADER_SIZE = HEADER_BYTES - 0x48;

export interface VdiHeader {
  text: string;
  imageType: number;
  offsetBmap: number;
  offsetData: number;
  diskSize: number;
  blockSize: number;
  blocksInImage: number;
  blocksAllocated: number;
  uuid: string;
}

export function hasVdiSignature(head: Uint8Array): boolean {
  if (head.length < 0x48) return false;
  const view = new DataView(head.buffer, head.byteOffset, head.length);
  return view.getUint32(0x40, true) === VDI_SIGNATURE;
}

/** Decodes and validates a VDI header; `who` names the file in messages. */
export function parseVdiHeader(buf: Uint8Array, who: string): VdiHeader {
  if (buf.length < HEADER_BYTES || !hasVdiSignature(buf)) {
    throw new CorruptImageError(`${who}: not a VDI header`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  const u32 = (at: number) => view.getUint32(at, true);
  const version = u32(0x44);
  if (version !== VDI_VERSION_1_1) {
    throw new UnsupportedFeatureError(
      `${who}: VDI version ${version >>> 16}.${version & 0xffff} is not supported`,
    );
  }
  const headerSize = u32(0x48);
  if (headerSize < MIN_HEADER_SIZE || headerSize > MAX_HEADER_SIZE) {
    throw new CorruptImageError(`${who}: invalid VDI header size ${headerSize}`);
  }
  const imageType = u32(0x4c);
  if (imageType !== TYPE_DYNAMIC && imageType !== TYPE_STATIC) {
    const name = TYPE_NAMES[imageType] ?? `type ${imageType}`;
    throw new UnsupportedFeatureError(`${who}: VDI ${name} images are not supported`);
  }
  const diskLo = u32(0x170);
  const diskHi = u32(0x174);
  if (diskHi >= 0x200000) throw new CorruptImageError(`${who}: VDI disk size is absurd`);
  const h: VdiHeader = {
    text: latin1Text(buf.subarray(0, 0x40)),
    imageType,
    offsetBmap: u32(0x154),
    offsetData: u32(0x158),
    diskSize: diskHi * 0x100000000 + diskLo,
    blockSize: u32(0x178),
    blocksInImage: u32(0x180),
    blocksAllocated: u32(0x184),
    uuid: uuidText(buf.subarray(0x188, 0x198)),
  };
  const sectorSize = u32(0x168);
  const blockExtra = u32(0x17c);
  if (sectorSize !== 512) {
    throw new UnsupportedFeatureError(`${who}: VDI sector size ${sectorSize} is not supported`);
  }
  if (blockExtra !== 0) {
    throw new UnsupportedFeatureError(`${who}: VDI blocks with extra data are not supported`);
  }
  const bs = h.blockSize;
  if (bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    throw new CorruptImageError(`${who}: invalid VDI block size ${bs}`);
  }
  if (h.blocksInImage > MAX_BLOCKS) {
    throw new CorruptImageError(`${who}: VDI block map of ${h.blocksInImage} entries is too large`);
  }
  if (h.diskSize > h.blocksInImage * bs) {
    throw new CorruptImageError(
      `${who}: VDI disk size ${h.diskSize} exceeds its ${h.blocksInImage} blocks of ${bs} bytes`,
    );
  }
  if (h.offsetBmap % 512 !== 0 || h.offsetData % 512 !== 0 || h.offsetBmap < HEADER_BYTES) {
    throw new CorruptImageError(`${who}: VDI block map or data offset is misaligned`);
  }
  if (!isNull(buf.subarray(0x1a8, 0x1b8)) || !isNull(buf.subarray(0x1b8, 0x1c8))) {
    throw new UnsupportedFeatureError(
      `${who}: VDI images linked to a parent (differencing) are not supported`,
    );
  }
  return h;
}

function isNull(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

function latin1Text(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return String.fromCharCode(...(nul >= 0 ? b.subarray(0, nul) : b)).trim();
}

/** VirtualBox stores UUIDs with the first three fields little-endian. */
function uuidText(b: Uint8Array): string {
  const order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15];
  return order.map((i) => (i < 0 ? '-' : b[i]!.toString(16).padStart(2, '0'))).join('');
}
