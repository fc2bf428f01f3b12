/**
 * qcow2 compressed clusters: raw deflate (compression_type 0) and zstd (compression_type 1).
 * Decoding goes through the decompression engine (src/codec); this file knows the qcow2
 * framing. Output is bounded to one cluster: a hostile stream cannot make us allocate more.
 */
import { decodeBatch, Flavour } from '../../codec/engine.js';
import { CorruptImageError } from '../../errors.js';
import type { CompressionType } from './header.js';

/**
 * Decompresses one cluster. `data` holds the compressed bytes as stored (qemu pads them to
 * whole sectors); the result is exactly `clusterSize` bytes or a CorruptImageError.
 */
export async function decompressCluster(
  type: CompressionType,
  data: Uint8Array,
  clusterSize: number,
  where: string,
): Promise<Uint8Array> {
  const zstd = type !== 'zlib';
  const size = zstd ? zstdFrameLength(data, clusterSize, where) : data.length;
  const out = new Uint8Array(clusterSize);
  const flavour = zstd ? Flavour.Zstd : Flavour.Deflate;
  const failure = await decodeBatch(
    data,
    [{ at: 0, size, to: 0, length: clusterSize, flavour }],
    out,
  );
  if (failure?.written !== undefined) {
    throw new CorruptImageError(
      `${where}: compressed cluster decompresses to ${failure.written} bytes, not ${clusterSize}`,
    );
  }
  if (failure) {
    throw new CorruptImageError(
      `${where}: bad ${zstd ? 'zstd' : 'deflate'} data (${failure.message})`,
    );
  }
  return out;
}

const ZSTD_MAGIC = 0xfd2fb528;
const ZSTD_BLOCK_MAX = 128 * 1024;

/**
 * The exact length of the zstd frame at the start of `buf`, found by walking the frame
 * header and block headers (RFC 8878 §3.1.1): the zstd library refuses qemu's trailing
 * sector padding. Also bounds the decompressed size by the block sizes, so that no frame can
 * expand to more than a cluster (plus one block of slack).
 */
export function zstdFrameLength(buf: Uint8Array, clusterSize: number, where: string): number {
  const bad = (why: string) => new CorruptImageError(`${where}: bad zstd frame (${why})`);
  if (buf.length < 6) throw bad('truncated header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(0, true) !== ZSTD_MAGIC) throw bad('no zstd magic');
  const fhd = buf[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd & 0x20) !== 0;
  const checksum = (fhd & 0x04) !== 0;
  if (fhd & 0x08) throw bad('reserved bit set');
  if (fhd & 0x03) throw bad('dictionary frames are not used by qcow2');
  let pos = 5;
  let window = 0;
  if (!singleSegment) {
    const wd = buf[pos++]!;
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (pos + fcsBytes > buf.length) throw bad('truncated header');
  let fcs = -1;
  if (fcsBytes === 1) fcs = buf[pos]!;
  else if (fcsBytes === 2) fcs = dv.getUint16(pos, true) + 256;
  else if (fcsBytes === 4) fcs = dv.getUint32(pos, true);
  else if (fcsBytes === 8) fcs = Number(dv.getBigUint64(pos, true));
  pos += fcsBytes;
  if (fcs >= 0 && fcs !== clusterSize) throw bad(`content size ${fcs} is not the cluster size`);
  if (singleSegment) window = fcs;
  const blockMax = Math.min(window, ZSTD_BLOCK_MAX);
  let bound = 0;
  for (;;) {
    if (pos + 3 > buf.length) throw bad('truncated block header');
    const hdr = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
    pos += 3;
    const last = (hdr & 1) !== 0;
    const type = (hdr >> 1) & 3;
    const size = hdr >>> 3;
    if (size > blockMax) throw bad('block larger than the window');
    if (type === 0) {
      pos += size;
      bound += size;
    } else if (type === 1) {
      pos += 1;
      bound += size;
    } else if (type === 2) {
      pos += size;
      bound += blockMax;
    } else throw bad('reserved block type');
    if (pos > buf.length) throw bad('truncated block');
    if (bound > clusterSize + ZSTD_BLOCK_MAX) throw bad('decompresses to more than a cluster');
    if (last) break;
  }
  if (checksum) pos += 4;
  if (pos > buf.length) throw bad('truncated checksum');
  return pos;
}
