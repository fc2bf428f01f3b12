/**
 * A VDI image: a block map sends each block (1 MiB as qemu and VirtualBox write them) to a
 * data block in the file, or marks it unallocated or zero; both of those read as zeroes.
 */
import { CorruptImageError } from '../../errors.js';
import { BaseImage, checkRange } from '../../image/base.js';
import { capabilities } from '../../image/capabilities.js';
import type { ByteSource, Extent, FormatDetails, MapEntry } from '../../image/types.js';
import { hostRuns } from '../host-io.js';
import { BLOCK_ZERO, TYPE_STATIC, type VdiHeader } from './header.js';

interface Run {
  offset: number;
  length: number;
  /** Host offset of the data, or undefined for a block that reads as zeroes. */
  hostOffset: number | undefined;
}

export class VdiImage extends BaseImage {
  readonly format = 'vdi';
  override readonly capabilities = capabilities({ extents: true });

  constructor(
    readonly source: ByteSource,
    readonly header: VdiHeader,
    private readonly bmap: Uint32Array,
    private readonly actualSize: number | undefined,
  ) {
    super();
  }

  get size(): number {
    return this.header.diskSize;
  }

  override get label(): string {
    return this.source.name;
  }

  /** Host offset of block `b`'s data, or undefined when the block reads as zeroes. */
  private hostOf(b: number): number | undefined {
    const entry = this.bmap[b]!;
    if (entry >= BLOCK_ZERO) return undefined;
    const { blockSize, offsetData, blocksInImage } = this.header;
    const host = offsetData + entry * blockSize;
    const need = Math.min(blockSize, this.size - b * blockSize);
    if (entry >= blocksInImage || host + need > this.source.size) {
      throw new CorruptImageError(
        `${this.label}: block ${b} maps to data block ${entry}, past the end of the file`,
      );
    }
    return host;
  }

  /** Block runs of [offset, offset+length), merged where the host data is contiguous. */
  private *runs(offset: number, length: number): Iterable<Run> {
    const bs = this.header.blockSize;
    const end = offset + length;
    let pending: Run | undefined;
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, (b + 1) * bs);
      const block = this.hostOf(b);
      const hostOffset = block === undefined ? undefined : block + from - b * bs;
      if (pending && mergeable(pending, hostOffset)) {
        pending.length += to - from;
        continue;
      }
      if (pending) yield pending;
      pending = { offset: from, length: to - from, hostOffset };
    }
    if (pending) yield pending;
  }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    const tasks: Promise<void>[] = [];
    for (const r of this.runs(offset, buf.length)) {
      const part = buf.subarray(r.offset - offset, r.offset - offset + r.length);
      if (r.hostOffset === undefined) part.fill(0);
      else tasks.push(this.readHost(part, r.hostOffset));
    }
    await Promise.all(tasks);
  }

  private async readHost(buf: Uint8Array, host: number): Promise<void> {
    const n = await this.source.read(buf, host);
    if (n !== buf.length) {
      throw new CorruptImageError(`${this.label}: file ended at ${host + n} while reading data`);
    }
  }

  /** Static images are looked through to the file's holes, as qemu does. */
  private *classified(offset: number, length: number) {
    const isStatic = this.header.imageType === TYPE_STATIC;
    for (const r of this.runs(offset, length)) {
      if (r.hostOffset === undefined || !isStatic) {
        yield { ...r, hole: false };
        continue;
      }
      for (const h of hostRuns(this.source, r.hostOffset, r.length)) {
        yield {
          offset: r.offset + h.offset - r.hostOffset,
          length: h.length,
          hostOffset: h.offset,
          hole: h.hole,
        };
      }
    }
  }

  protected override async *extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    for (const r of this.classified(offset, length)) {
      const unmapped = r.hostOffset === undefined;
      yield { offset: r.offset, length: r.length, zero: unmapped || r.hole, hole: unmapped };
    }
  }

  /** qemu-img map: unallocated and zero blocks are present zeroes (VDI has no backing). */
  async *mapping(offset: number, length: number): AsyncIterable<MapEntry> {
    checkRange(offset, length, this.size, this.label);
    for (const r of this.classified(offset, length)) {
      const base = { offset: r.offset, length: r.length, depth: 0, present: true };
      if (r.hostOffset === undefined) yield { ...base, zero: true, data: false };
      else yield { ...base, zero: r.hole, data: true, hostOffset: r.hostOffset };
    }
  }

  describe(): FormatDetails {
    return {
      format: 'vdi',
      virtualSize: this.size,
      clusterSize: this.header.blockSize,
      ...(this.actualSize !== undefined ? { actualSize: this.actualSize } : {}),
    };
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

function mergeable(r: Run, hostOffset: number | undefined): boolean {
  if (r.hostOffset === undefined || hostOffset === undefined) {
    return r.hostOffset === undefined && hostOffset === undefined;
  }
  return r.hostOffset + r.length === hostOffset;
}
