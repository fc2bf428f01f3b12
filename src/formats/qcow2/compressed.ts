/**
 * Decompression of qcow2 compressed clusters: raw deflate (compression_type 0) and zstd
 * (compression_type 1). Both run asynchronously on the libuv pool, so several clusters in
 * flight decompress in parallel. Output is bounded to one cluster: a hostile stream cannot
 * make us allocate more.
 */
import { inflateRaw } from 'node:zlib';
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import type { CompressionType } from './header.js';

type ZstdDecompress = (data: Buffer) => Promise<Buffer>;
let zstd: Promise<ZstdDecompress> | undefined;

function loadZstd(): Promise<ZstdDecompress> {
  zstd ??= import('@mongodb-js/zstd').then(
    (m) => m.decompress,
    (err: unknown) => {
      zstd = undefined;
      throw new UnsupportedFeatureError(
        `zstd-compressed qcow2 clusters need @mongodb-js/zstd, which failed to load: ${(err as Error).message}`,
      );
    },
  );
  return zstd;
}

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
  let out: Uint8Array;
  if (type === 'zlib') {
    out = await new Promise<Uint8Array>((resolve, reject) => {
      inflateRaw(data, { maxOutputLength: clusterSize }, (err, result) => {
        if (err)
          reject(
            new CorruptImageError(`${where}: bad deflate data (${err.message})`, { cause: err }),
          );
        else resolve(result);
      });
    });
  } else {
    const frame = data.subarray(0, zstdFrameLength(data, clusterSize, where));
    const decompress = await loadZstd();
    try {
      out = await decompress(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
    } catch (err) {
      throw new CorruptImageError(`${where}: bad zstd data (${(err as Error).message})`, {
        cause: err,
      });
    }
  }
  if (out.length !== clusterSize) {
    throw new CorruptImageError(
      `${where}: compressed cluster decompresses to ${out.length} bytes, not ${clusterSize}`,
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
