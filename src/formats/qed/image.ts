/**
 * QED (qemu enhanced disk): a two-level table (L1 -> L2 -> data clusters), zero clusters
 * (entry 1) and an optional backing file for unallocated clusters.
 */

import { dirname, isAbsolute, resolve } from 'node:path';
import { CorruptImageError } from '../../errors.js';
import type { ByteSource, FormatDetails } from '../../image/types.js';
import { view } from '../../io/bytes.js';
import { BlockImage, type Segment } from '../block-image.js';
import type { OpenContext } from '../registry.js';
import { readExact } from '../vhd/bytes.js';
import { TableReader } from '../vhd/cache.js';
import {
  F_BACKING_FILE,
  F_BACKING_FORMAT_NO_PROBE,
  F_NEED_CHECK,
  HEADER_BYTES,
  parseHeader,
  type QedHeader,
} from './header.js';

/** qemu keeps backing names in a PATH_MAX buffer. */
const MAX_BACKING_NAME = 4095;
const ZERO_CLUSTER = 1;

export class QedImage extends BlockImage {
  readonly format = 'qed';
  readonly size: number;
  private readonly tables: TableReader;
  private readonly tableBytes: number;
  /** Guest bytes one L2 table covers. */
  private readonly l2Span: number;
  /** Cluster-aligned end of the file: qemu ignores a partial last cluster. */
  private readonly fileEnd: number;

  private constructor(
    readonly source: ByteSource,
    private readonly header: QedHeader,
    private readonly backingName: string | undefined,
  ) {
    super();
    const { clusterSize, tableSize, imageSize } = header;
    this.size = imageSize;
    this.tableBytes = tableSize * clusterSize;
    this.l2Span = (this.tableBytes / 8) * clusterSize;
    this.fileEnd = Math.floor(source.size / clusterSize) * clusterSize;
    this.tables = new TableReader(source, 'QED table');
  }

  static async open(source: ByteSource, ctx: OpenContext): Promise<QedImage> {
    const label = `qed image ${source.name}`;
    const header = parseHeader(await readExact(source, 0, HEADER_BYTES, 'QED header'), label);
    let backingName: string | undefined;
    if (header.features & F_BACKING_FILE) {
      if (header.backingNameSize > MAX_BACKING_NAME) {
        throw new CorruptImageError(`${label}: backing file name is too long`);
      }
      const raw = await readExact(
        source,
        header.backingNameOffset,
        header.backingNameSize,
        'backing file name',
      );
      backingName = new TextDecoder().decode(raw).replace(/\0.*$/s, '');
    }
    const image = new QedImage(source, header, backingName);
    if (!image.validTable(header.l1TableOffset)) {
      throw new CorruptImageError(`${label}: L1 table offset ${header.l1TableOffset} is invalid`);
    }
    await image.checkDistinctTables();
    if (backingName !== undefined && backingName.length > 0) {
      const fmt = header.features & F_BACKING_FORMAT_NO_PROBE ? 'raw' : undefined;
      image.backing = await ctx.openBacking(backingName, source, fmt);
    }
    return image;
  }

  get dirty(): boolean {
    return (this.header.features & F_NEED_CHECK) !== 0n;
  }

  /** A data cluster offset as qemu accepts it: aligned, past the header, inside the file. */
  private validCluster(offset: number): boolean {
    const { clusterSize, headerSize } = this.header;
    return (
      offset % clusterSize === 0 && offset >= headerSize * clusterSize && offset < this.fileEnd
    );
  }

  private validTable(offset: number): boolean {
    return this.validCluster(offset) && offset + this.tableBytes <= this.fileEnd;
  }

  /**
   * The L1 entries in use must point at distinct, non-overlapping L2 tables: one table behind
   * every L1 entry lets a small file claim terabytes of clusters to walk. (At most a few MiB:
   * the image size bounds the entries in use.)
   */
  private async checkDistinctTables(): Promise<void> {
    const count = Math.ceil(this.size / this.l2Span);
    const l1 = view(await readExact(this.source, this.header.l1TableOffset, count * 8, 'L1 table'));
    const used: number[] = [];
    for (let i = 0; i < count; i++) {
      const lo = l1.getUint32(i * 8, true);
      const hi = l1.getUint32(i * 8 + 4, true);
      if (lo !== 0 || hi !== 0) used.push(hi * 2 ** 32 + lo);
    }
    used.sort((a, b) => a - b);
    for (let i = 1; i < used.length; i++) {
      const [a, b] = [used[i - 1]!, used[i]!];
      if (b - a < this.tableBytes) {
        const what =
          a === b
            ? `two L1 entries point at the L2 table at ${a}`
            : `L2 tables at ${a} and ${b} overlap`;
        throw new CorruptImageError(`${this.label}: ${what} (cross-linked L1 table)`);
      }
    }
  }

  private async entry(at: number): Promise<number> {
    const { lo, hi } = await this.tables.u64le(at);
    if (hi >= 2 ** 21) throw new CorruptImageError(`${this.label}: table entry at ${at} is absurd`);
    return hi * 2 ** 32 + lo;
  }

  protected async *segments(offset: number, length: number): AsyncIterable<Segment> {
    const { clusterSize, l1TableOffset } = this.header;
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const l1Index = Math.floor(pos / this.l2Span);
      const l2Start = l1Index * this.l2Span;
      const l2Stop = Math.min(end, l2Start + this.l2Span);
      const l2 = await this.entry(l1TableOffset + l1Index * 8);
      if (l2 === 0) {
        yield { kind: 'lower', offset: pos, length: l2Stop - pos };
        pos = l2Stop;
        continue;
      }
      if (!this.validTable(l2)) {
        throw new CorruptImageError(
          `${this.label}: L1 entry ${l1Index} points to an invalid L2 table`,
        );
      }
      while (pos < l2Stop) {
        const l2Index = Math.floor((pos - l2Start) / clusterSize);
        const start = l2Start + l2Index * clusterSize;
        const stop = Math.min(l2Stop, start + clusterSize);
        const e = await this.entry(l2 + l2Index * 8);
        if (e === 0) yield { kind: 'lower', offset: pos, length: stop - pos };
        else if (e === ZERO_CLUSTER)
          yield { kind: 'zero', offset: pos, length: stop - pos, present: true };
        else if (!this.validCluster(e)) {
          throw new CorruptImageError(
            `${this.label}: cluster for guest offset ${start} points to invalid offset ${e}`,
          );
        } else yield { kind: 'data', offset: pos, length: stop - pos, host: e + (pos - start) };
        pos = stop;
      }
    }
  }

  describe(): FormatDetails {
    const d: FormatDetails = {
      format: 'qed',
      virtualSize: this.size,
      clusterSize: this.header.clusterSize,
      dirty: this.dirty,
      specific: {
        'table-size': this.header.tableSize,
        'header-size': this.header.headerSize,
        'need-check': this.dirty,
      },
    };
    if (this.backingName !== undefined) {
      d.backingFilename = this.backingName;
      if (this.header.features & F_BACKING_FORMAT_NO_PROBE) d.backingFormat = 'raw';
      if (this.source.path) {
        d.fullBackingFilename = isAbsolute(this.backingName)
          ? this.backingName
          : resolve(dirname(this.source.path), this.backingName);
      }
    }
    return d;
  }
}
