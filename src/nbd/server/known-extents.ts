/**
 * The extents a connection's last BLOCK_STATUS reported, kept to answer the READs that follow
 * it. nbdcopy (and qemu's mirror) ask for the status of a large range, then read its data in
 * small pieces: each READ group needs the extents of its range (zeroes become hole chunks),
 * and a second walk of the image's map per group cost more than the status walk itself.
 * Only for a read-only export: a write could change them.
 */
import type { Extent } from '../../image/types.js';

export class KnownExtents {
  private extents: Extent[] = [];

  /** Remembers a status walk: contiguous, ordered extents (replaces the previous one). */
  remember(extents: Extent[]): void {
    this.extents = extents;
  }

  /** The extents of [offset, offset + length), clipped, if the last walk covered it all. */
  lookup(offset: number, length: number): Extent[] | undefined {
    const xs = this.extents;
    const end = offset + length;
    const first = xs[0];
    const last = xs.at(-1);
    if (!first || !last || offset < first.offset || end > last.offset + last.length) {
      return undefined;
    }
    // The last extent that starts at or before `offset`.
    let lo = 0;
    let hi = xs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (xs[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const out: Extent[] = [];
    for (let i = lo; i < xs.length && xs[i]!.offset < end; i++) {
      const e = xs[i]!;
      const from = Math.max(e.offset, offset);
      const to = Math.min(e.offset + e.length, end);
      if (to > from) out.push({ offset: from, length: to - from, zero: e.zero, hole: e.hole });
    }
    return out;
  }
}
