/**
 * A streamOptimized vmdk writer. The format is made to be written front to back: header and
 * descriptor, then each grain that is not all zeroes as a marker (its sector and compressed
 * length) and its deflated bytes, then the grain tables, the grain directory and a footer
 * (the header again, locating the directory), each behind a metadata marker, and an
 * end-of-stream marker. So writes must arrive in offset order with no gaps (the copy engine's
 * `ordered` mode; zero ranges come through `zero`). Grains are compressed on zlib's thread
 * pool, several at once, and written in order.
 */
import { promisify } from 'node:util';
import { deflate } from 'node:zlib';
import { NotCapableError, OutOfRangeError } from '../../../errors.js';
import { capabilities } from '../../../image/capabilities.js';
import { isZero } from '../../../io/bytes.js';
import { FileWriter } from '../../file-writer.js';
import { MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT, SECTOR } from '../header.js';
import {
  capacityOf,
  DESCRIPTOR_SECTOR,
  encodeDescriptor,
  encodeGrainTable,
  encodeHeader,
  GD_AT_END,
  GRAIN_SECTORS,
  GRAIN_SIZE,
  GT_SECTORS,
  GTES_PER_GT,
  gdSectorsOf,
  MAX_HOST_SECTOR,
} from './layout.js';
import type { SequentialSink } from './sequential-sink.js';
import type { VmdkWriterOptions } from './sparse-writer.js';

const deflateAsync = promisify(deflate);

const CAPS = capabilities({ write: true, zero: true });

/** Grains being compressed at once (each holds 64 KiB plus its output). */
const COMPRESS_AHEAD = 8;

interface PendingGrain {
  grain: number;
  compressed: Promise<Buffer>;
}

function roundSector(n: number): number {
  return Math.ceil(n / SECTOR) * SECTOR;
}

function metadataMarker(sectors: number, type: number): Buffer {
  const m = Buffer.alloc(SECTOR);
  m.writeBigUInt64LE(BigInt(sectors), 0);
  m.writeUInt32LE(type, 12);
  return m;
}

export class VmdkStreamWriter extends FileWriter<SequentialSink> {
  readonly format = 'vmdk';
  override readonly capabilities = CAPS;
  readonly size: number;
  private readonly capacity: number;
  /** Guest bytes accepted so far: writes must continue exactly here. */
  private position = 0;
  /** Host bytes written so far. */
  private host: number;
  private readonly grain = Buffer.alloc(GRAIN_SIZE);
  private grainFill = 0;
  private readonly pending: PendingGrain[] = [];
  private readonly tables = new Map<number, Uint32Array>();

  private constructor(file: SequentialSink, capacity: number, sync: boolean) {
    super(file, sync);
    this.capacity = capacity;
    this.size = capacity * SECTOR;
    this.host = GRAIN_SIZE; // grains start after the first 128 sectors, as qemu's do
  }

  /** `file`: a local file (LocalFile) or a stream sink; either is written front to back. */
  static async create(file: SequentialSink, o: VmdkWriterOptions): Promise<VmdkStreamWriter> {
    const capacity = capacityOf(o.size);
    const w = new VmdkStreamWriter(file, capacity, o.sync === true);
    await file.truncate(0);
    const header = encodeHeader({
      subformat: 'streamOptimized',
      capacitySectors: capacity,
      rgdSector: 0,
      gdSector: GD_AT_END,
      overheadSectors: GRAIN_SECTORS,
    });
    await file.write(header, 0);
    await file.write(
      encodeDescriptor('streamOptimized', capacity, o.fileName),
      DESCRIPTOR_SECTOR * SECTOR,
    );
    return w;
  }

  protected override async writeAt(buf: Uint8Array, offset: number): Promise<void> {
    this.expect(offset);
    for (let pos = 0; pos < buf.length; ) {
      const n = Math.min(GRAIN_SIZE - this.grainFill, buf.length - pos);
      this.grain.set(buf.subarray(pos, pos + n), this.grainFill);
      this.grainFill += n;
      this.position += n;
      pos += n;
      if (this.grainFill === GRAIN_SIZE) await this.endGrain();
    }
  }

  protected override async zeroAt(offset: number, length: number): Promise<void> {
    this.expect(offset);
    let left = length;
    while (left > 0) {
      if (this.grainFill === 0 && left >= GRAIN_SIZE) {
        // Whole zero grains are simply not stored.
        const whole = Math.floor(left / GRAIN_SIZE) * GRAIN_SIZE;
        this.position += whole;
        left -= whole;
        continue;
      }
      const n = Math.min(GRAIN_SIZE - this.grainFill, left);
      this.grain.fill(0, this.grainFill, this.grainFill + n);
      this.grainFill += n;
      this.position += n;
      left -= n;
      if (this.grainFill === GRAIN_SIZE) await this.endGrain();
    }
  }

  private expect(offset: number): void {
    if (offset !== this.position) {
      throw new NotCapableError(
        `${this.label}: a streamOptimized vmdk is written in order (expected offset ${this.position}, got ${offset})`,
      );
    }
  }

  /** The grain buffer is complete (or the image ends): queue it unless it is all zero. */
  private async endGrain(): Promise<void> {
    const grain = Math.floor((this.position - 1) / GRAIN_SIZE);
    const data = this.grain.subarray(0, GRAIN_SIZE);
    if (this.grainFill < GRAIN_SIZE) data.fill(0, this.grainFill);
    this.grainFill = 0;
    if (isZero(data)) return;
    this.pending.push({ grain, compressed: deflateAsync(Buffer.from(data)) });
    if (this.pending.length >= COMPRESS_AHEAD) await this.writeOldest();
  }

  private async writeOldest(): Promise<void> {
    const p = this.pending.shift()!;
    const compressed = await p.compressed;
    const out = Buffer.alloc(roundSector(12 + compressed.length));
    out.writeBigUInt64LE(BigInt(p.grain * GRAIN_SECTORS), 0);
    out.writeUInt32LE(compressed.length, 8);
    compressed.copy(out, 12);
    const sector = this.host / SECTOR;
    if (sector + out.length / SECTOR > MAX_HOST_SECTOR) {
      throw new OutOfRangeError(`${this.label}: the vmdk cannot address more than 2 TiB of data`);
    }
    await this.file.write(out, this.host);
    this.host += out.length;
    const t = Math.floor(p.grain / GTES_PER_GT);
    let table = this.tables.get(t);
    if (!table) {
      table = new Uint32Array(GTES_PER_GT);
      this.tables.set(t, table);
    }
    table[p.grain % GTES_PER_GT] = sector;
  }

  private async append(buf: Buffer): Promise<number> {
    const at = this.host;
    await this.file.write(buf, at);
    this.host += buf.length;
    return at / SECTOR;
  }

  /** Writes what is left, the tables, directory, footer and end marker. */
  protected async complete(): Promise<void> {
    if (this.grainFill > 0) await this.endGrain();
    while (this.pending.length > 0) await this.writeOldest();
    const gdSectors = gdSectorsOf(this.capacity);
    const gd = Buffer.alloc(gdSectors * SECTOR);
    for (const t of [...this.tables.keys()].sort((a, b) => a - b)) {
      const table = this.tables.get(t)!;
      await this.append(metadataMarker(GT_SECTORS, MARKER_GT));
      gd.writeUInt32LE(await this.append(encodeGrainTable(table)), t * 4);
    }
    await this.append(metadataMarker(gdSectors, MARKER_GD));
    const gdSector = await this.append(gd);
    await this.append(metadataMarker(1, MARKER_FOOTER));
    await this.append(
      encodeHeader({
        subformat: 'streamOptimized',
        capacitySectors: this.capacity,
        rgdSector: 0,
        gdSector,
        overheadSectors: GRAIN_SECTORS,
      }),
    );
    await this.append(metadataMarker(0, MARKER_EOS));
  }

  protected override async abandon(): Promise<void> {
    await Promise.allSettled(this.pending.map((p) => p.compressed));
  }
}
