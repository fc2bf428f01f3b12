/** What a VMDK image needs from each of its extents (sparse, flat or zero). */
import type { ByteSource } from '../../image/types.js';

/**
 * How a run of an extent's bytes is stored:
 * - `data`: in the extent file (`hostOffset` when not compressed; `hostHole` when the file has
 *   a hole there, so the bytes read as zeroes though they are allocated in the image);
 * - `zero`: explicitly zero with no storage (zero grain, ZERO extent);
 * - `unallocated`: not in this image (the parent's bytes, or zeroes without a parent).
 */
export interface Run {
  /** Offset inside the extent. */
  offset: number;
  length: number;
  kind: 'data' | 'zero' | 'unallocated';
  hostOffset?: number;
  compressed?: boolean;
  hostHole?: boolean;
}

/** Fills `buf` for an unallocated range that starts at extent offset `offset`. */
export type FillUnallocated = (buf: Uint8Array, offset: number) => Promise<void>;

export interface VmdkExtent {
  /** Extent type as qemu-img info shows it ('' for a monolithic sparse file). */
  readonly type: string;
  /** Virtual bytes the extent covers. */
  readonly size: number;
  /** The file holding the extent's data (none for ZERO). */
  readonly file: ByteSource | undefined;
  /** Grain size for sparse extents. */
  readonly clusterSize: number | undefined;
  readonly compressed: boolean;
  /** Ordered, contiguous runs covering at least [offset, offset+length). */
  runs(offset: number, length: number): AsyncIterable<Run>;
  /** Fills `buf` with the extent's bytes at `offset`, asking `fill` for unallocated parts. */
  read(buf: Uint8Array, offset: number, fill: FillUnallocated): Promise<void>;
}
