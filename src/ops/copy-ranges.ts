/**
 * Copies chosen guest ranges from one image to another at the same offsets (commit, safe
 * rebase): zero ranges become zero writes, data moves in bounded chunks. Adjacent ranges of
 * one kind are joined so small map entries cost one request.
 */
import { joinSpans } from '../image/extents.js';
import type { Image } from '../image/types.js';

export interface Range {
  offset: number;
  length: number;
  /** The range reads as zeroes: write zeroes instead of copying. */
  zero: boolean;
}

const CHUNK = 4 * 1024 * 1024;

/** Returns the bytes written (data and zeroes). */
export async function copyRanges(src: Image, dst: Image, ranges: Iterable<Range>): Promise<number> {
  let written = 0;
  let buf: Uint8Array | undefined;
  for await (const r of joinSpans(ranges, sameKind)) {
    if (r.zero) {
      await dst.zero!(r.offset, r.length);
    } else {
      buf ??= new Uint8Array(CHUNK);
      for (let done = 0; done < r.length; ) {
        const n = Math.min(CHUNK, r.length - done);
        const part = buf.subarray(0, n);
        await src.read(part, r.offset + done);
        await dst.write!(part, r.offset + done);
        done += n;
      }
    }
    written += r.length;
  }
  return written;
}

function sameKind(a: Range, b: Range): boolean {
  return a.zero === b.zero;
}
