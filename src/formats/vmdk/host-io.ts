/**
 * Reading the host file under an extent: exact reads, and holes in the host file under a flat extent (or a static VDI): qemu looks through such
 * ranges to the file (BDRV_BLOCK_RECURSE) and reports them as allocated zeroes. A source that
 * cannot tell (not a local file, or no SEEK_HOLE) reports data.
 */
import { CorruptImageError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { LocalFile } from '../../io/file.js';

/** Reads exactly `buf.length` bytes or reports where the file ended. */
export async function readExact(
  file: ByteSource,
  buf: Uint8Array,
  offset: number,
  what: string,
): Promise<Uint8Array> {
  const n = await file.read(buf, offset);
  if (n !== buf.length) {
    throw new CorruptImageError(
      `${file.name}: file ends at ${offset + n} while reading ${what} (${buf.length} bytes at ${offset})`,
    );
  }
  return buf;
}

export interface HostRun {
  /** Host offset. */
  offset: number;
  length: number;
  hole: boolean;
}

/** Splits host range [offset, offset+length) into data and hole runs. */
export function* hostRuns(file: ByteSource, offset: number, length: number): Iterable<HostRun> {
  const end = offset + length;
  if (!(file instanceof LocalFile)) {
    yield { offset, length, hole: false };
    return;
  }
  let pos = offset;
  while (pos < end) {
    const data = file.seek(pos, 'data');
    if (data === 'unsupported') {
      yield { offset: pos, length: end - pos, hole: false };
      return;
    }
    const dataStart = data === 'eof' ? end : Math.min(data, end);
    if (dataStart > pos) {
      yield { offset: pos, length: dataStart - pos, hole: true };
      pos = dataStart;
      if (pos >= end) return;
    }
    const hole = file.seek(pos, 'hole');
    const dataEnd = typeof hole === 'number' && hole > pos ? Math.min(hole, end) : end;
    yield { offset: pos, length: dataEnd - pos, hole: false };
    pos = dataEnd;
  }
}
