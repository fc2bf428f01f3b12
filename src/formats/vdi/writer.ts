/**
 * A dynamic VDI (VirtualBox) writer: the 512-byte header, the block map (one 32-bit entry per
 * 1 MiB block: its index among the allocated blocks, or unallocated), then the blocks in the
 * order data first reaches them. Unwritten parts of a block are file holes.
 */
import { randomBytes } from 'node:crypto';
import { UsageError } from '../../errors.js';
import type { LocalFile } from '../../io/file.js';
import { BlockMapWriter } from '../block-writer.js';
import {
  BLOCK_UNALLOCATED,
  HEADER_BYTES,
  TYPE_DYNAMIC,
  VDI_SIGNATURE,
  VDI_VERSION_1_1,
} from './header.js';

export const VDI_BLOCK_SIZE = 1024 * 1024;
/** The banner VirtualBox and qemu put first; readers check only the signature after it. */
const BANNER = '<<< diskpipe VDI Disk Image >>>\n';
/** Bytes of the v1.1 header after its size field (as VirtualBox writes it). */
const HEADER_SIZE_FIELD = 0x180;

export interface VdiWriterOptions {
  /** Virtual size in bytes (rounded up to 512). */
  size: number;
  sync?: boolean;
}

export class VdiWriter extends BlockMapWriter {
  readonly format = 'vdi';
  private readonly mapBytes: number;

  private constructor(file: LocalFile, size: number, sync: boolean) {
    const blocks = Math.ceil(size / VDI_BLOCK_SIZE);
    const mapBytes = Math.ceil((blocks * 4) / 512) * 512;
    super(file, { size, blockSize: VDI_BLOCK_SIZE, dataStart: HEADER_BYTES + mapBytes }, sync);
    this.mapBytes = mapBytes;
  }

  static async create(file: LocalFile, o: VdiWriterOptions): Promise<VdiWriter> {
    const size = Math.ceil(o.size / 512) * 512;
    if (Math.ceil(size / VDI_BLOCK_SIZE) >= BLOCK_UNALLOCATED - 1) {
      throw new UsageError(`${o.size} bytes is too large for a VDI image`);
    }
    await file.truncate(0);
    return new VdiWriter(file, size, o.sync === true);
  }

  protected async finish(): Promise<void> {
    const map = Buffer.alloc(this.mapBytes);
    for (let b = 0; b < this.blocks; b++) {
      const host = this.hostOf(b);
      const index =
        host === undefined ? BLOCK_UNALLOCATED : (host - this.dataStart) / VDI_BLOCK_SIZE;
      map.writeUInt32LE(index, b * 4);
    }
    await this.file.write(map, HEADER_BYTES);
    await this.file.write(this.header(), 0);
  }

  private get dataStart(): number {
    return HEADER_BYTES + this.mapBytes;
  }

  private header(): Buffer {
    const h = Buffer.alloc(HEADER_BYTES);
    h.write(BANNER, 0, 'latin1');
    h.writeUInt32LE(VDI_SIGNATURE, 0x40);
    h.writeUInt32LE(VDI_VERSION_1_1, 0x44);
    h.writeUInt32LE(HEADER_SIZE_FIELD, 0x48);
    h.writeUInt32LE(TYPE_DYNAMIC, 0x4c);
    h.writeUInt32LE(HEADER_BYTES, 0x154); // block map offset
    h.writeUInt32LE(this.dataStart, 0x158); // data offset
    h.writeUInt32LE(512, 0x168); // sector size
    h.writeBigUInt64LE(BigInt(this.size), 0x170);
    h.writeUInt32LE(VDI_BLOCK_SIZE, 0x178);
    h.writeUInt32LE(this.blocks, 0x180);
    h.writeUInt32LE(this.allocatedBlocks, 0x184);
    randomBytes(16).copy(h, 0x188); // image UUID
    randomBytes(16).copy(h, 0x198); // last-modification UUID
    return h;
  }
}
