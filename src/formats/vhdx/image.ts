/**
 * VHDX ([MS-VHDX]): payload blocks found through the BAT, with a sector bitmap entry interleaved
 * after every `chunkRatio` payload entries. Dynamic and fixed disks are read; a pending log is
 * replayed in memory first; differencing disks are refused.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource, FormatDetails } from '../../image/types.js';
import { BlockImage, type Segment } from '../block-image.js';
import { ascii, readExact } from '../vhd/bytes.js';
import { TableReader } from '../vhd/cache.js';
import { NULL_GUID } from './guid.js';
import { replayLog } from './log.js';
import {
  checkNoOverlap,
  type Metadata,
  MiB,
  readCurrentHeader,
  readMetadata,
  readRegions,
} from './structures.js';

/** The state field of a payload BAT entry, by value (VHDX 1.00 §2.5.1.1). */
const PAYLOAD = {
  NOT_PRESENT: 0,
  UNDEFINED: 1,
  ZERO: 2,
  UNMAPPED: 3,
  UNMAPPED_V095: 5,
  FULLY_PRESENT: 6,
  PARTIALLY_PRESENT: 7,
} as const;

interface Span {
  what: string;
  offset: number;
  length: number;
}

export class VhdxImage extends BlockImage {
  readonly format = 'vhdx';
  readonly size: number;
  private readonly bat: TableReader;
  private readonly chunkRatio: number;

  private constructor(
    readonly source: ByteSource,
    private readonly md: Metadata,
    private readonly batOffset: number,
    /** File ranges no payload block may touch: header section, log, regions. */
    private readonly reserved: Span[],
    private readonly replayed: number,
  ) {
    super();
    this.size = md.virtualSize;
    this.chunkRatio = (2 ** 23 * md.logicalSectorSize) / md.blockSize;
    this.bat = new TableReader(source, 'VHDX BAT');
  }

  static async open(file: ByteSource): Promise<VhdxImage> {
    const label = `vhdx image ${file.name}`;
    if (ascii(await readExact(file, 0, 8, 'file identifier'), 0, 8) !== 'vhdxfile') {
      throw new CorruptImageError(`${label}: not a VHDX image (no 'vhdxfile' identifier)`);
    }
    const header = await readCurrentHeader(file, label);
    if (header.logVersion !== 0) {
      throw new UnsupportedFeatureError(`${label}: unknown log version ${header.logVersion}`);
    }
    const log = { what: 'log', offset: header.logOffset, length: header.logLength };
    if (
      log.length > 0 &&
      (log.offset % MiB !== 0 ||
        log.offset < MiB ||
        log.length % MiB !== 0 ||
        log.offset + log.length > file.size)
    ) {
      throw new CorruptImageError(`${label}: log region ${log.offset}+${log.length} is invalid`);
    }
    const { source, replayed } =
      header.logGuid === NULL_GUID
        ? { source: file, replayed: 0 }
        : await replayLog(file, { guid: header.logGuid, ...log }, label);
    const regions = await readRegions(source, label);
    const reserved: Span[] = [
      { what: 'header section', offset: 0, length: MiB },
      log,
      ...regions.all.map((r) => ({ what: `region ${r.guid}`, offset: r.offset, length: r.length })),
    ];
    checkNoOverlap(reserved, label);
    const spans = reserved.filter((r) => r.length > 0);
    const md = await readMetadata(source, regions.metadata, label);
    const chunkRatio = (2 ** 23 * md.logicalSectorSize) / md.blockSize;
    const payloadBlocks = Math.ceil(md.virtualSize / md.blockSize);
    const batEntries =
      payloadBlocks === 0 ? 0 : payloadBlocks + Math.floor((payloadBlocks - 1) / chunkRatio);
    if (batEntries * 8 > regions.bat.length) {
      throw new CorruptImageError(
        `${label}: BAT region of ${regions.bat.length} bytes cannot hold ${batEntries} entries`,
      );
    }
    if (regions.bat.offset + batEntries * 8 > source.size) {
      throw new CorruptImageError(`${label}: BAT lies past the end of the file (truncated?)`);
    }
    return new VhdxImage(source, md, regions.bat.offset, spans, replayed);
  }

  protected async *segments(offset: number, length: number): AsyncIterable<Segment> {
    const { blockSize } = this.md;
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const block = Math.floor(pos / blockSize);
      const start = block * blockSize;
      const stop = Math.min(end, start + blockSize);
      const n = stop - pos;
      const index = block + Math.floor(block / this.chunkRatio);
      const { lo, hi } = await this.bat.u64le(this.batOffset + index * 8);
      const state = lo & 7;
      switch (state) {
        case PAYLOAD.NOT_PRESENT:
          yield { kind: 'lower', offset: pos, length: n };
          break;
        case PAYLOAD.UNDEFINED:
        case PAYLOAD.UNMAPPED:
        case PAYLOAD.UNMAPPED_V095:
          yield { kind: 'zero', offset: pos, length: n, present: false };
          break;
        case PAYLOAD.ZERO:
          yield { kind: 'zero', offset: pos, length: n, present: true };
          break;
        case PAYLOAD.FULLY_PRESENT: {
          const host = this.blockOffset(block, lo, hi);
          yield { kind: 'data', offset: pos, length: n, host: host + (pos - start), sparse: true };
          break;
        }
        case PAYLOAD.PARTIALLY_PRESENT:
          throw new CorruptImageError(
            `${this.label}: block ${block} is partially present, but the disk has no parent`,
          );
        default:
          throw new CorruptImageError(`${this.label}: block ${block} has invalid state ${state}`);
      }
      pos = stop;
    }
  }

  /** A present block's file offset, checked to lie inside the file and clear of metadata. */
  private blockOffset(block: number, lo: number, hi: number): number {
    if (hi >= 2 ** 21)
      throw new CorruptImageError(`${this.label}: BAT entry for block ${block} is absurd`);
    const host = (hi * 2 ** 12 + (lo >>> 20)) * MiB;
    // The last block may be partial: only the part inside the disk has to exist (as qemu).
    const used = Math.min(this.md.blockSize, this.size - block * this.md.blockSize);
    if (host + used > this.source.size) {
      throw new CorruptImageError(
        `${this.label}: BAT entry for block ${block} points past the end of the file (offset ${host}; file is ${this.source.size} bytes, truncated?)`,
      );
    }
    for (const r of this.reserved) {
      if (host < r.offset + r.length && r.offset < host + used) {
        throw new CorruptImageError(`${this.label}: block ${block} overlaps the ${r.what}`);
      }
    }
    return host;
  }

  describe(): FormatDetails {
    return {
      format: 'vhdx',
      virtualSize: this.size,
      clusterSize: this.md.blockSize,
      // A log left to replay means the image was not closed cleanly.
      dirty: this.replayed > 0,
      specific: {
        'block-size': this.md.blockSize,
        'logical-sector-size': this.md.logicalSectorSize,
        'physical-sector-size': this.md.physicalSectorSize,
        'leave-blocks-allocated': this.md.leaveBlocksAllocated,
        'page83-id': this.md.page83,
        'log-entries-replayed': this.replayed,
      },
    };
  }
}
