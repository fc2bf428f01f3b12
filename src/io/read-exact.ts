/** Exact reads of image metadata: a short read is a truncated (corrupt) image, named clearly. */
import { CorruptImageError } from '../errors.js';
import type { ByteSource } from '../image/types.js';

/** Fills `buf` from `offset`, or fails naming what was being read and where the file ended. */
export async function readExactInto(
  source: ByteSource,
  buf: Uint8Array,
  offset: number,
  what: string,
): Promise<Uint8Array> {
  const n = await source.read(buf, offset);
  if (n !== buf.length) {
    throw new CorruptImageError(
      `${source.name}: file ended at ${offset + n} while reading ${what} (${buf.length} bytes at ${offset})`,
    );
  }
  return buf;
}

/** Reads exactly `length` bytes at `offset`, checked against the source size before allocating. */
export async function readExact(
  source: ByteSource,
  offset: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  if (offset + length > source.size) {
    throw new CorruptImageError(
      `${source.name}: ${what} at ${offset}+${length} lies past the end of the file (${source.size} bytes)`,
    );
  }
  return readExactInto(source, new Uint8Array(length), offset, what);
}
