/**
 * Hashing a local file range on the thread that reads it: the range is read a piece at a time
 * into one small buffer that stays in the CPU cache, and each piece's blocks are hashed while
 * they are still there. Used by hash workers (and the inline hasher) for raw files.
 */
import { readSync } from 'node:fs';
import type { BlockDigester } from './blkhash.js';
import { hashMappedRange } from './mapped-range.js';

/**
 * A range of a local file that a worker reads and hashes itself, a cache-sized piece at a
 * time: no window buffer, no thread-pool read and no main-thread hop per window, and the
 * bytes are hashed while still in the core's cache. The descriptor must stay open until
 * the job settles.
 */
export interface FileRange {
  fd: number;
  position: number;
  /** The file's name, for errors. */
  name: string;
  /**
   * Hash the range through a mapping of the file (mapped-range.ts) when it can be mapped,
   * instead of reading it: set by a caller that may use native calls.
   */
  mapped?: boolean | undefined;
}

/** Bytes read per piece: a quarter of a core's 1 MiB L2 here, a whole number of blocks. */
export const FILE_PIECE_BYTES = 256 * 1024;

export type FileRangeResult =
  | { digests: Uint8Array; hashedBytes: number }
  /** The file ended at this offset, inside the range: nothing is returned. */
  | { ended: number };

/**
 * Reads file[position, position + length) through `scratch` and returns one digest per block
 * (the last one may be short). `scratch` must hold at least one block; it is used whole
 * blocks at a time. A read error throws (the caller reports it).
 */
export function hashFileRange(
  digester: BlockDigester,
  file: FileRange,
  length: number,
  scratch: Uint8Array,
): FileRangeResult {
  if (file.mapped) {
    const mapped = hashMappedRange(digester, file.fd, file.position, length);
    if (mapped) return mapped;
  }
  const bs = digester.blockSize;
  const piece = Math.max(bs, Math.floor(scratch.length / bs) * bs);
  const buf = scratch.length >= piece ? scratch : new Uint8Array(piece);
  const dl = digester.digestLength;
  const digests = new Uint8Array(Math.ceil(length / bs) * dl);
  let hashedBytes = 0;
  for (let done = 0; done < length; ) {
    const n = Math.min(piece, length - done);
    let got = 0;
    while (got < n) {
      const r = readSync(file.fd, buf, got, n - got, file.position + done + got);
      if (r === 0) return { ended: file.position + done + got };
      got += r;
    }
    const out = digests.subarray((done / bs) * dl);
    hashedBytes += digester.hashBlocks(buf, n, out);
    done += n;
  }
  return { digests, hashedBytes };
}
