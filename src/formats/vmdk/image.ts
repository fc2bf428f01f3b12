/**
 * A VMDK image: its extents laid end to end, plus an optional parent (delta link) that
 * supplies the bytes of unallocated grains.
 */
import { BaseImage, checkRange } from '../../image/base.js';
import { capabilities } from '../../image/capabilities.js';
import { RefusedFile } from '../../image/refused-file.js';
import type { ByteSource, Extent, FormatDetails, Image, MapEntry } from '../../image/types.js';
import type { Run, VmdkExtent } from './extent.js';

export interface VmdkInfo {
  createType: string;
  cid: number | undefined;
  parentCid: number | undefined;
  parentFileNameHint: string | undefined;
  /** Host bytes of the descriptor and all extent files, when known. */
  actualSize: number | undefined;
}

interface Placed {
  start: number;
  extent: VmdkExtent;
}

export class VmdkImage extends BaseImage {
  readonly format = 'vmdk';
  override readonly capabilities = capabilities({ extents: true });
  readonly size: number;
  private readonly placed: Placed[];

  constructor(
    readonly source: ByteSource,
    extents: VmdkExtent[],
    readonly info: VmdkInfo,
    backing: Image | undefined,
  ) {
    super();
    this.backing = backing;
    let start = 0;
    this.placed = extents.map((extent) => {
      const p = { start, extent };
      start += extent.size;
      return p;
    });
    this.size = start;
  }

  override get label(): string {
    return this.source.name;
  }

  /** The extents overlapping [offset, offset+length), with the overlap in extent terms. */
  private *overlapping(offset: number, length: number) {
    const end = offset + length;
    let i = this.findExtent(offset);
    for (; i < this.placed.length; i++) {
      const p = this.placed[i]!;
      if (p.start >= end) break;
      const from = Math.max(offset, p.start);
      const to = Math.min(end, p.start + p.extent.size);
      if (to > from) yield { ...p, from: from - p.start, to: to - p.start };
    }
  }

  private findExtent(offset: number): number {
    let lo = 0;
    let hi = this.placed.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.placed[mid]!.start <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    const tasks: Promise<void>[] = [];
    for (const { start, extent, from, to } of this.overlapping(offset, buf.length)) {
      const part = buf.subarray(start + from - offset, start + to - offset);
      tasks.push(extent.read(part, from, (b, at) => this.readParent(b, start + at)));
    }
    await Promise.all(tasks);
  }

  /** Unallocated bytes: the parent's, or zeroes (also past the end of a shorter parent). */
  private async readParent(buf: Uint8Array, offset: number): Promise<void> {
    const parent = this.backing;
    const inParent = parent ? Math.max(0, Math.min(buf.length, parent.size - offset)) : 0;
    if (inParent > 0) await parent!.read(buf.subarray(0, inParent), offset);
    buf.fill(0, inParent);
  }

  /** Runs of the range in image offsets, clipped to it (extents yield whole grains). */
  private async *imageRuns(offset: number, length: number): AsyncIterable<Run> {
    for (const { start, extent, from, to } of this.overlapping(offset, length)) {
      for await (const r of extent.runs(from, to - from)) {
        const lo = Math.max(r.offset, from);
        const hi = Math.min(r.offset + r.length, to);
        if (hi <= lo) continue;
        const clipped: Run = { ...r, offset: start + lo, length: hi - lo };
        if (r.hostOffset !== undefined) clipped.hostOffset = r.hostOffset + (lo - r.offset);
        yield clipped;
      }
    }
  }

  protected override async *extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    for await (const r of this.imageRuns(offset, length)) {
      if (r.kind === 'data') {
        const zero = r.hostHole === true;
        yield { offset: r.offset, length: r.length, zero, hole: false };
      } else if (r.kind === 'zero' || !this.backing) {
        yield { offset: r.offset, length: r.length, zero: true, hole: true };
      } else {
        yield* this.parentExtents(r.offset, r.length);
      }
    }
  }

  private async *parentExtents(offset: number, length: number): AsyncIterable<Extent> {
    const parent = this.backing!;
    const from = Math.max(offset, 0);
    const to = Math.min(offset + length, parent.size);
    if (to > from) yield* parent.extents(from, to - from);
    if (offset + length > Math.max(to, from)) {
      const at = Math.max(to, from);
      yield { offset: at, length: offset + length - at, zero: true, hole: true };
    }
  }

  /** qemu-img map: depth 0 for this image's grains, depth+1 for what the parent supplies. */
  async *mapping(offset: number, length: number): AsyncIterable<MapEntry> {
    checkRange(offset, length, this.size, this.label);
    for await (const r of this.imageRuns(offset, length)) {
      const base = { offset: r.offset, length: r.length, depth: 0 };
      if (r.kind === 'data') {
        yield {
          ...base,
          present: true,
          zero: r.hostHole === true,
          data: true,
          ...(r.hostOffset !== undefined ? { hostOffset: r.hostOffset } : {}),
          ...(r.compressed ? { compressed: true } : {}),
        };
      } else if (r.kind === 'zero') {
        yield { ...base, present: true, zero: true, data: false };
      } else if (!this.backing) {
        yield { ...base, present: false, zero: true, data: false };
      } else {
        yield* this.parentMapping(r.offset, r.length);
      }
    }
  }

  private async *parentMapping(offset: number, length: number): AsyncIterable<MapEntry> {
    const parent = this.backing!;
    const to = Math.min(offset + length, parent.size);
    if (to > offset) {
      if (parent.mapping) {
        for await (const e of parent.mapping(offset, to - offset))
          yield { ...e, depth: e.depth + 1 };
      } else {
        for await (const e of parent.extents(offset, to - offset)) {
          const { offset: o, length: l, zero } = e;
          yield { offset: o, length: l, depth: 1, present: !e.hole, zero, data: !zero };
        }
      }
    }
    const at = Math.max(to, offset);
    if (offset + length > at) {
      yield {
        offset: at,
        length: offset + length - at,
        depth: 1,
        present: false,
        zero: true,
        data: false,
      };
    }
  }

  describe(): FormatDetails {
    const first = this.placed[0]?.extent;
    const details: FormatDetails = {
      format: 'vmdk',
      virtualSize: this.size,
      specific: {
        ...(this.info.cid !== undefined ? { cid: this.info.cid } : {}),
        ...(this.info.parentCid !== undefined ? { 'parent-cid': this.info.parentCid } : {}),
        'create-type': this.info.createType,
        extents: this.placed.map(({ extent }) => ({
          ...(extent.compressed ? { compressed: true } : {}),
          'virtual-size': extent.size,
          filename: extent.file?.name ?? '',
          ...(extent.clusterSize !== undefined ? { 'cluster-size': extent.clusterSize } : {}),
          format: extent.type,
        })),
      },
    };
    const refused = this.placed.flatMap(({ extent }) =>
      extent.file instanceof RefusedFile ? [extent.file.reason] : [],
    );
    if (refused.length > 0) details.refusedFiles = refused;
    if (first?.clusterSize !== undefined) details.clusterSize = first.clusterSize;
    if (this.info.actualSize !== undefined) details.actualSize = this.info.actualSize;
    if (this.info.parentFileNameHint !== undefined) {
      details.backingFilename = this.info.parentFileNameHint;
      details.backingFormat = 'vmdk';
      const parentPath = this.backing instanceof VmdkImage ? this.backing.source.path : undefined;
      if (parentPath) details.fullBackingFilename = parentPath;
    }
    return details;
  }

  async close(): Promise<void> {
    const files = new Set<ByteSource>([this.source]);
    for (const { extent } of this.placed) if (extent.file) files.add(extent.file);
    const results = await Promise.allSettled([
      ...[...files].map((f) => f.close()),
      ...(this.backing ? [this.backing.close()] : []),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}
