/**
 * A dynamic VHDX writer ([MS-VHDX]): file identifier, two headers, two region tables, an
 * empty 1 MiB log, the block allocation table and the metadata region, then payload blocks
 * (1 MiB-aligned) appended as data first reaches them. Blocks never written stay "not
 * present" (they read as zeroes); unwritten parts of a present block are file holes. The
 * default block size follows qemu-img's choice for the virtual size.
 */
import { randomBytes } from 'node:crypto';
import { UsageError } from '../../errors.js';
import type { LocalFile } from '../../io/file.js';
import { BlockMapWriter } from '../block-writer.js';
import { checksumWithField } from './crc32c.js';
import {
  BAT_REGION,
  FILE_PARAMETERS,
  LOGICAL_SECTOR_SIZE,
  METADATA_REGION,
  PAGE_83_DATA,
  PHYSICAL_SECTOR_SIZE,
  VIRTUAL_DISK_SIZE,
} from './guid.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SECTOR = 512;
const LOG_OFFSET = 1 * MiB;
const LOG_LENGTH = 1 * MiB;
const BAT_OFFSET = 2 * MiB;
const METADATA_LENGTH = 1 * MiB;
/** Metadata items start after the 64 KiB metadata table. */
const ITEMS_AT = 64 * KiB;
const PAYLOAD_FULLY_PRESENT = 6;
const MAX_SIZE = 64 * MiB * MiB;

export interface VhdxWriterOptions {
  /** Virtual size in bytes (rounded up to 512). */
  size: number;
  /** Payload block size (1 MiB to 256 MiB, a power of two); default as qemu-img picks it. */
  blockSize?: number;
  sync?: boolean;
}

/** qemu-img's default block size for a dynamic VHDX of `size` bytes. */
export function defaultBlockSize(size: number): number {
  if (size > 32 * MiB * MiB) return 64 * MiB;
  if (size > 100 * KiB * MiB) return 32 * MiB;
  if (size > 1 * KiB * MiB) return 16 * MiB;
  return 8 * MiB;
}

/** Encodes a GUID string as VHDX stores it (first three fields little-endian). */
function guidBytes(text: string): Buffer {
  const hex = text.replace(/-/g, '');
  const b = Buffer.from(hex, 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

function randomGuid(): Buffer {
  const b = randomBytes(16);
  b[7] = (b[7]! & 0x0f) | 0x40; // version 4 (byte 7: the third field is little-endian)
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

export class VhdxWriter extends BlockMapWriter {
  readonly format = 'vhdx';
  private readonly chunkRatio: number;
  private readonly batEntries: number;
  private readonly batLength: number;
  private readonly metadataOffset: number;

  private constructor(file: LocalFile, size: number, blockSize: number, sync: boolean) {
    const blocks = Math.ceil(size / blockSize);
    const chunkRatio = (2 ** 23 * SECTOR) / blockSize;
    // A sector bitmap entry follows every chunkRatio payload entries. For an empty disk qemu
    // computes (0 - 1) in 32 bits and wants a BAT region that large: give it one (a hole).
    const batEntries = blocks + Math.floor((blocks - 1) / chunkRatio);
    const regionEntries = blocks === 0 ? Math.floor(0xffffffff / chunkRatio) : batEntries;
    const batLength = Math.max(1, Math.ceil((regionEntries * 8) / MiB)) * MiB;
    const metadataOffset = BAT_OFFSET + batLength;
    super(file, { size, blockSize, dataStart: metadataOffset + METADATA_LENGTH }, sync);
    this.chunkRatio = chunkRatio;
    this.batEntries = Math.max(0, batEntries);
    this.batLength = batLength;
    this.metadataOffset = metadataOffset;
  }

  static async create(file: LocalFile, o: VhdxWriterOptions): Promise<VhdxWriter> {
    const size = Math.ceil(o.size / SECTOR) * SECTOR;
    if (size > MAX_SIZE)
      throw new UsageError(`${o.size} bytes is larger than the VHDX limit of 64 TiB`);
    const blockSize = o.blockSize ?? defaultBlockSize(size);
    if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
      throw new UsageError('a VHDX block size must be a power of two from 1 MiB to 256 MiB');
    }
    await file.truncate(0);
    return new VhdxWriter(file, size, blockSize, o.sync === true);
  }

  protected async finish(): Promise<void> {
    const ident = Buffer.alloc(64 * KiB);
    ident.write('vhdxfile', 0, 'latin1');
    ident.write('diskpipe', 8, 'utf16le');
    await this.file.write(ident, 0);
    const fileWrite = randomGuid();
    const dataWrite = randomGuid();
    for (const [i, at] of [64 * KiB, 128 * KiB].entries()) {
      await this.file.write(this.header(BigInt(i + 1), fileWrite, dataWrite), at);
    }
    const regions = this.regionTable();
    await this.file.write(regions, 192 * KiB);
    await this.file.write(regions, 256 * KiB);
    await this.file.write(this.bat(), BAT_OFFSET);
    await this.file.write(this.metadata(), this.metadataOffset);
  }

  private header(sequence: bigint, fileWrite: Buffer, dataWrite: Buffer): Buffer {
    const h = Buffer.alloc(4 * KiB);
    h.write('head', 0, 'latin1');
    h.writeBigUInt64LE(sequence, 8);
    fileWrite.copy(h, 16);
    dataWrite.copy(h, 32);
    // Log GUID (48) stays zero: there is nothing to replay.
    h.writeUInt16LE(0, 64); // log version
    h.writeUInt16LE(1, 66); // version
    h.writeUInt32LE(LOG_LENGTH, 68);
    h.writeBigUInt64LE(BigInt(LOG_OFFSET), 72);
    h.writeUInt32LE(checksumWithField(h, 4), 4);
    return h;
  }

  private regionTable(): Buffer {
    const t = Buffer.alloc(64 * KiB);
    t.write('regi', 0, 'latin1');
    t.writeUInt32LE(2, 8);
    const entry = (i: number, guid: string, offset: number, length: number) => {
      const at = 16 + i * 32;
      guidBytes(guid).copy(t, at);
      t.writeBigUInt64LE(BigInt(offset), at + 16);
      t.writeUInt32LE(length, at + 24);
      t.writeUInt32LE(1, at + 28); // required
    };
    entry(0, BAT_REGION, BAT_OFFSET, this.batLength);
    entry(1, METADATA_REGION, this.metadataOffset, METADATA_LENGTH);
    t.writeUInt32LE(checksumWithField(t, 4), 4);
    return t;
  }

  private bat(): Buffer {
    const bat = Buffer.alloc(this.batEntries * 8);
    for (let b = 0; b < this.blocks; b++) {
      const host = this.hostOf(b);
      if (host === undefined) continue; // not present: reads as zeroes
      const index = b + Math.floor(b / this.chunkRatio);
      bat.writeBigUInt64LE(
        BigInt(host / MiB) * 2n ** 20n + BigInt(PAYLOAD_FULLY_PRESENT),
        index * 8,
      );
    }
    return bat;
  }

  private metadata(): Buffer {
    const m = Buffer.alloc(ITEMS_AT + 64);
    m.write('metadata', 0, 'latin1');
    const items: [string, Buffer, number][] = [];
    const u32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      return b;
    };
    const params = Buffer.alloc(8);
    params.writeUInt32LE(this.blockSize, 0);
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(this.size));
    // Flags: 4 = required, 2 = describes the virtual disk.
    items.push([FILE_PARAMETERS, params, 4]);
    items.push([VIRTUAL_DISK_SIZE, size, 6]);
    items.push([PAGE_83_DATA, randomGuid(), 6]);
    items.push([LOGICAL_SECTOR_SIZE, u32(SECTOR), 6]);
    items.push([PHYSICAL_SECTOR_SIZE, u32(SECTOR), 6]);
    m.writeUInt16LE(items.length, 10);
    let offset = ITEMS_AT;
    for (const [i, [guid, data, flags]] of items.entries()) {
      const at = 32 + i * 32;
      guidBytes(guid).copy(m, at);
      m.writeUInt32LE(offset, at + 16);
      m.writeUInt32LE(data.length, at + 20);
      m.writeUInt32LE(flags, at + 24);
      data.copy(m, offset);
      offset += data.length;
    }
    return m;
  }
}
