/** Compressed wrappers recognised by their magic bytes (never by the file name). */

export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2';

/** Bytes needed to recognise every wrapper. */
export const DETECT_BYTES = 16;

function startsWith(head: Uint8Array, magic: number[], at = 0): boolean {
  if (head.length < at + magic.length) return false;
  return magic.every((b, i) => head[at + i] === b);
}

export function detectCompression(head: Uint8Array): Compression | undefined {
  // gzip: ID1 ID2, method 8 (deflate), reserved flag bits clear.
  if (startsWith(head, [0x1f, 0x8b, 0x08]) && head.length > 3 && (head[3]! & 0xe0) === 0)
    return 'gzip';
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  // zstd frame, or a skippable frame (pzstd and the seekable format start with one).
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (head.length >= 8 && (head[0]! & 0xf0) === 0x50 && startsWith(head, [0x2a, 0x4d, 0x18], 1))
    return 'zstd';
  // bzip2: "BZh1".."BZh9", then a block (pi) or end-of-stream (sqrt pi) magic.
  if (startsWith(head, [0x42, 0x5a, 0x68]) && head[3]! >= 0x31 && head[3]! <= 0x39) {
    if (startsWith(head, [0x31, 0x41, 0x59, 0x26, 0x53, 0x59], 4)) return 'bzip2';
    if (startsWith(head, [0x17, 0x72, 0x45, 0x38, 0x50, 0x90], 4)) return 'bzip2';
  }
  return undefined;
}

/** The usual file suffix of each wrapper (for naming what is inside). */
export const SUFFIX: Record<Compression, RegExp> = {
  gzip: /\.(gz|gzip)$/i,
  xz: /\.xz$/i,
  zstd: /\.(zst|zstd)$/i,
  bzip2: /\.(bz2|bzip2)$/i,
};
