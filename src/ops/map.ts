import { entryOf, mergeMapEntries } from '../image/extents.js';
import type { Image, MapEntry } from '../image/types.js';

/**
 * The allocation walk `map` prints, with qemu-img map's meaning. Formats that know more
 * (depth, host offsets) answer `mapping()`; others are described from their extents.
 * Adjacent entries that qemu-img would print as one are merged.
 */
export async function* mapImage(
  image: Image,
  offset = 0,
  length = image.size - offset,
): AsyncIterable<MapEntry> {
  const source = image.mapping ? image.mapping(offset, length) : fromExtents(image, offset, length);
  yield* mergeMapEntries(source);
}

async function* fromExtents(image: Image, offset: number, length: number): AsyncIterable<MapEntry> {
  for await (const e of image.extents(offset, length)) {
    yield entryOf(e, { depth: 0, present: !e.hole, data: !e.zero });
  }
}

/** One entry as `qemu-img map --output=json` prints it. */
export function mapEntryJson(e: MapEntry): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = {
    start: e.offset,
    length: e.length,
    depth: e.depth,
    present: e.present,
    zero: e.zero,
    data: e.data,
  };
  if (e.compressed) out.compressed = true;
  if (e.hostOffset !== undefined) out.offset = e.hostOffset;
  return out;
}

/**
 * A one-line picture of where the data is: each cell covers size/width bytes and shows the
 * "strongest" content in it: '#' data, '0' allocated zeroes, '.' nothing allocated.
 */
export class AllocationBar {
  private readonly cells: number[];
  constructor(
    private readonly size: number,
    readonly width = 64,
  ) {
    this.cells = new Array(width).fill(0);
  }
  add(e: MapEntry): void {
    if (this.size === 0) return;
    const rank = e.data ? 2 : e.present ? 1 : 0;
    const first = Math.floor((e.offset / this.size) * this.width);
    const last = Math.min(
      this.width - 1,
      Math.floor(((e.offset + e.length - 1) / this.size) * this.width),
    );
    for (let i = first; i <= last; i++) this.cells[i] = Math.max(this.cells[i]!, rank);
  }
  toString(): string {
    return this.cells.map((r) => (r === 2 ? '#' : r === 1 ? '0' : '.')).join('');
  }
}
