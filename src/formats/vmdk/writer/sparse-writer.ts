/**
 * A monolithicSparse vmdk writer, laid out as qemu-img and VMware lay it out: header,
 * embedded descriptor, redundant grain directory and tables, grain directory and tables
 * (all preallocated), then 64 KiB grains appended as data first reaches them.
 */
import type { LocalFile } from '../../../io/file.js';
import { BlockMapWriter } from '../../block-writer.js';
import { SECTOR } from '../header.js';
import {
  capacityOf,
  DESCRIPTOR_SECTOR,
  DESCRIPTOR_SECTORS,
  encodeDescriptor,
  encodeGrainTable,
  encodeHeader,
  GRAIN_SECTORS,
  GRAIN_SIZE,
  GT_SECTORS,
  GTES_PER_GT,
  gdSectorsOf,
  gtCount,
  MAX_HOST_SECTOR,
} from './layout.js';

export interface VmdkWriterOptions {
  /** Virtual size in bytes (rounded up to 512). */
  size: number;
  /** The name the extent line records: the final file name (not a temporary one). */
  fileName: string;
  sync?: boolean;
}

export class VmdkSparseWriter extends BlockMapWriter {
  readonly format = 'vmdk';
  private readonly capacity: number;
  private readonly gts: number;
  private readonly gdSectors: number;
  private readonly rgd: number;
  private readonly gd: number;
  private readonly overhead: number;

  private constructor(
    file: LocalFile,
    capacity: number,
    private readonly fileName: string,
    sync: boolean,
  ) {
    const gts = gtCount(capacity);
    const gdSectors = gdSectorsOf(capacity);
    const gtSectors = gts * GT_SECTORS;
    const rgd = DESCRIPTOR_SECTOR + DESCRIPTOR_SECTORS;
    const gd = rgd + gdSectors + gtSectors;
    const overhead = Math.ceil((gd + gdSectors + gtSectors) / GRAIN_SECTORS) * GRAIN_SECTORS;
    super(
      file,
      {
        size: capacity * SECTOR,
        blockSize: GRAIN_SIZE,
        dataStart: overhead * SECTOR,
        maxHostOffset: (MAX_HOST_SECTOR - GRAIN_SECTORS) * SECTOR,
      },
      sync,
    );
    this.capacity = capacity;
    this.gts = gts;
    this.gdSectors = gdSectors;
    this.rgd = rgd;
    this.gd = gd;
    this.overhead = overhead;
  }

  static async create(file: LocalFile, o: VmdkWriterOptions): Promise<VmdkSparseWriter> {
    const capacity = capacityOf(o.size);
    encodeDescriptor('monolithicSparse', capacity, o.fileName); // checks the name fits
    await file.truncate(0);
    return new VmdkSparseWriter(file, capacity, o.fileName, o.sync === true);
  }

  protected async finish(): Promise<void> {
    const header = encodeHeader({
      subformat: 'monolithicSparse',
      capacitySectors: this.capacity,
      rgdSector: this.rgd,
      gdSector: this.gd,
      overheadSectors: this.overhead,
    });
    await this.file.write(header, 0);
    const desc = encodeDescriptor('monolithicSparse', this.capacity, this.fileName);
    await this.file.write(desc, DESCRIPTOR_SECTOR * SECTOR);
    for (const dir of [this.rgd, this.gd]) {
      const gtStart = dir + this.gdSectors;
      const gdBuf = Buffer.alloc(this.gdSectors * SECTOR);
      for (let t = 0; t < this.gts; t++) {
        gdBuf.writeUInt32LE(gtStart + t * GT_SECTORS, t * 4);
      }
      await this.file.write(gdBuf, dir * SECTOR);
      for (let t = 0; t < this.gts; t++) {
        const gt = this.table(t);
        // Empty tables are left as holes in the preallocated area (they read as zeroes).
        if (gt) await this.file.write(gt, (gtStart + t * GT_SECTORS) * SECTOR);
      }
    }
  }

  /** Grain table `t`, or undefined when none of its grains is allocated. */
  private table(t: number): Buffer | undefined {
    let sectors: Uint32Array | undefined;
    for (let i = 0; i < GTES_PER_GT; i++) {
      const host = this.hostOf(t * GTES_PER_GT + i);
      if (host === undefined) continue;
      sectors ??= new Uint32Array(GTES_PER_GT);
      sectors[i] = host / SECTOR;
    }
    return sectors && encodeGrainTable(sectors);
  }
}
