/**
 * The sparsify filter: an Image whose free filesystem blocks read as zeroes and are reported
 * as zero extents, so copies, checksums and NBD clients skip them. Everything the filter does
 * not understand, or cannot trust, reads exactly as the image below. Read-only: a guest that
 * wrote into a "free" block would read zeroes back.
 */
import { NotCapableError } from '../../errors.js';
import { checkRange, ImageWrapper } from '../../image/base.js';
import { capabilities } from '../../image/capabilities.js';
import { mergeExtents } from '../../image/extents.js';
import type { Capabilities, Extent, Image } from '../../image/types.js';
import { readPartitions } from './partitions.js';
import { probePartition } from './probe.js';
import type { Partition, PartitionLayout, Range, Verdict } from './types.js';

export interface SparsifiedPartition extends Partition {
  verdict: Verdict;
}

/** Filesystems read per disk; caches are ≤ 2.5 MiB each, so memory stays ≤ 80 MiB. */
const MAX_MAPPED = 32;

const CAPS = capabilities({ extents: true });

export class SparsifyImage extends ImageWrapper {
  private constructor(
    next: Image,
    readonly layout: PartitionLayout,
    readonly partitions: readonly SparsifiedPartition[],
  ) {
    super(next);
  }

  /** Reads the partition table and each partition's filesystem header. */
  static async open(next: Image): Promise<SparsifyImage> {
    const layout = await readPartitions(next);
    const partitions: SparsifiedPartition[] = [];
    if (!layout.passReason) {
      let mapped = 0;
      for (const p of layout.partitions) {
        // Each free-space map has its own bounded caches: a bounded number of them.
        const verdict: Verdict =
          mapped < MAX_MAPPED
            ? await probePartition(next, p)
            : { kind: 'pass', reason: `more than ${MAX_MAPPED} filesystems on one disk` };
        if (verdict.kind === 'sparsify') mapped++;
        partitions.push({ ...p, verdict });
      }
    }
    // freeRuns walks partitions in disk order (GPT entries need not be sorted).
    partitions.sort((a, b) => a.start - b.start);
    return new SparsifyImage(next, layout, partitions);
  }

  /** The image being sparsified. */
  get below(): Image {
    return this.next;
  }

  override get capabilities(): Readonly<Capabilities> {
    return CAPS;
  }

  override async read(buf: Uint8Array, offset: number): Promise<void> {
    checkRange(offset, buf.length, this.size, this.format);
    const end = offset + buf.length;
    let pos = offset;
    for await (const r of this.freeRuns(offset, end)) {
      if (r.start > pos) await this.next.read(buf.subarray(pos - offset, r.start - offset), pos);
      buf.fill(0, r.start - offset, r.end - offset);
      pos = r.end;
    }
    if (end > pos) await this.next.read(buf.subarray(pos - offset), pos);
  }

  override extents(offset = 0, length = this.size - offset): AsyncIterable<Extent> {
    checkRange(offset, length, this.size, this.format);
    return mergeExtents(this.sparseExtents(offset, length));
  }

  private async *sparseExtents(offset: number, length: number): AsyncIterable<Extent> {
    if (length === 0) return;
    for await (const e of this.next.extents(offset, length)) {
      if (e.zero) {
        yield e;
        continue;
      }
      const end = e.offset + e.length;
      let pos = e.offset;
      for await (const r of this.freeRuns(e.offset, end)) {
        if (r.start > pos) yield { offset: pos, length: r.start - pos, zero: false, hole: e.hole };
        yield { offset: r.start, length: r.end - r.start, zero: true, hole: true };
        pos = r.end;
      }
      if (end > pos) yield { offset: pos, length: end - pos, zero: false, hole: e.hole };
    }
  }

  /** Free runs in disk offsets inside [from, to), with the partition table's own bytes kept. */
  async *freeRuns(from: number, to: number): AsyncIterable<Range> {
    for (const p of this.partitions) {
      if (p.verdict.kind !== 'sparsify') continue;
      const pEnd = Math.min(p.start + p.length, this.size);
      const a = Math.max(from, p.start);
      const b = Math.min(to, pEnd);
      if (a >= b) continue;
      for await (const r of p.verdict.space.free(a - p.start, b - p.start)) {
        const start = Math.max(a, r.start + p.start);
        const end = Math.min(b, r.end + p.start);
        if (start < end) yield* outside({ start, end }, this.layout.reserved);
      }
    }
  }

  override write(): Promise<void> {
    throw new NotCapableError('sparsify: the sparsified image is read-only');
  }
  override zero(): Promise<void> {
    throw new NotCapableError('sparsify: the sparsified image is read-only');
  }
  override trim(): Promise<void> {
    throw new NotCapableError('sparsify: the sparsified image is read-only');
  }
  override flush(): Promise<void> {
    return Promise.resolve();
  }
}

/** The parts of `r` outside every reserved range (few ranges; order kept). */
function* outside(r: Range, reserved: readonly Range[]): Iterable<Range> {
  let pieces: Range[] = [r];
  for (const k of reserved) {
    pieces = pieces.flatMap((p) => {
      if (k.end <= p.start || k.start >= p.end) return [p];
      const out: Range[] = [];
      if (k.start > p.start) out.push({ start: p.start, end: k.start });
      if (k.end < p.end) out.push({ start: k.end, end: p.end });
      return out;
    });
  }
  yield* pieces;
}
