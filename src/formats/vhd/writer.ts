/**
 * VHD (qemu's "vpc") writers: dynamic (a block allocation table of 2 MiB blocks, each block
 * preceded by its sector bitmap) and fixed (the raw disk followed by the footer). Sizes follow
 * qemu-img: rounded up to the CHS geometry unless `forceSize`. The footer's creator application
 * tells readers which size to trust: 'qemu' means the geometry, 'qem2' the current-size field
 * (qemu's own convention, which Hyper-V-style readers and diskpipe's reader share).
 */
import { randomBytes } from 'node:crypto';
import { capabilities } from '../../image/capabilities.js';
import type { LocalFile } from '../../io/file.js';
import { BlockMapWriter } from '../block-writer.js';
import { FileWriter } from '../file-writer.js';
import {
  DISK_DYNAMIC,
  DISK_FIXED,
  DYNAMIC_HEADER_SIZE,
  FOOTER_SIZE,
  vhdChecksum,
} from './footer.js';
import { type Chs, vhdSize } from './geometry.js';

export const VHD_BLOCK_SIZE = 2 * 1024 * 1024;
/** Seconds from the Unix epoch to 2000-01-01 UTC, the VHD timestamp origin. */
const VHD_EPOCH = 946684800;
const NO_OFFSET = 0xffffffffffffffffn;

export interface VhdWriterOptions {
  /** Requested size in bytes (rounded up to the geometry unless `forceSize`). */
  size: number;
  /** Keep the exact size (rounded up to 512 bytes) instead of the geometry's. */
  forceSize?: boolean;
  sync?: boolean;
}

function encodeFooter(size: number, chs: Chs, type: number, forceSize: boolean): Buffer {
  const f = Buffer.alloc(FOOTER_SIZE);
  f.write('conectix', 0, 'latin1');
  f.writeUInt32BE(2, 8); // features: reserved bit, always set
  f.writeUInt32BE(0x00010000, 12); // format version 1.0
  f.writeBigUInt64BE(type === DISK_DYNAMIC ? BigInt(FOOTER_SIZE) : NO_OFFSET, 16);
  f.writeUInt32BE(Math.max(0, Math.floor(Date.now() / 1000) - VHD_EPOCH), 24);
  f.write(forceSize ? 'qem2' : 'qemu', 28, 'latin1');
  f.writeUInt32BE(0x00050003, 32);
  f.write('Wi2k', 36, 'latin1');
  f.writeBigUInt64BE(BigInt(size), 40); // original size
  f.writeBigUInt64BE(BigInt(size), 48); // current size
  f.writeUInt16BE(chs.cylinders, 56);
  f.writeUInt8(chs.heads, 58);
  f.writeUInt8(chs.sectorsPerTrack, 59);
  f.writeUInt32BE(type, 60);
  randomBytes(16).copy(f, 68);
  f.writeUInt32BE(vhdChecksum(f, 64), 64);
  return f;
}

/** A dynamic VHD: footer copy, dynamic header, BAT, then blocks as data arrives, footer. */
export class VhdDynamicWriter extends BlockMapWriter {
  readonly format = 'vpc';
  private readonly footer: Buffer;
  private readonly batOffset = FOOTER_SIZE + DYNAMIC_HEADER_SIZE;
  private readonly batBytes: number;
  private static readonly bitmap = Buffer.alloc(512, 0xff);

  private constructor(file: LocalFile, size: number, chs: Chs, forceSize: boolean, sync: boolean) {
    const entries = Math.ceil(size / VHD_BLOCK_SIZE);
    const batBytes = Math.ceil((entries * 4) / 512) * 512;
    super(
      file,
      {
        size,
        blockSize: VHD_BLOCK_SIZE,
        dataStart: FOOTER_SIZE + DYNAMIC_HEADER_SIZE + batBytes,
        prefix: 512,
        maxHostOffset: 0xfffffffe * 512,
      },
      sync,
    );
    this.batBytes = batBytes;
    this.footer = encodeFooter(size, chs, DISK_DYNAMIC, forceSize);
  }

  static async create(file: LocalFile, o: VhdWriterOptions): Promise<VhdDynamicWriter> {
    const { size, chs } = vhdSize(o.size, o.forceSize === true);
    await file.truncate(0);
    return new VhdDynamicWriter(file, size, chs, o.forceSize === true, o.sync === true);
  }

  /** Every sector of a new block is marked present: its holes read as zeroes. */
  protected override blockPrefix(): Uint8Array {
    return VhdDynamicWriter.bitmap;
  }

  protected async finish(): Promise<void> {
    const h = Buffer.alloc(DYNAMIC_HEADER_SIZE);
    h.write('cxsparse', 0, 'latin1');
    h.writeBigUInt64BE(NO_OFFSET, 8);
    h.writeBigUInt64BE(BigInt(this.batOffset), 16);
    h.writeUInt32BE(0x00010000, 24);
    h.writeUInt32BE(this.blocks, 28);
    h.writeUInt32BE(VHD_BLOCK_SIZE, 32);
    h.writeUInt32BE(vhdChecksum(h, 36), 36);
    const bat = Buffer.alloc(this.batBytes, 0xff);
    for (let b = 0; b < this.blocks; b++) {
      const host = this.hostOf(b);
      if (host !== undefined) bat.writeUInt32BE(host / 512, b * 4);
    }
    await this.file.write(this.footer, 0);
    await this.file.write(h, FOOTER_SIZE);
    await this.file.write(bat, this.batOffset);
    await this.file.write(this.footer, this.end);
  }
}

const FIXED_CAPS = capabilities({ write: true, zero: true });

/** A fixed VHD: the disk's bytes at their own offsets (sparse), then the footer. */
export class VhdFixedWriter extends FileWriter<LocalFile> {
  readonly format = 'vpc';
  override readonly capabilities = FIXED_CAPS;

  private constructor(
    file: LocalFile,
    readonly size: number,
    private readonly footer: Buffer,
    sync: boolean,
  ) {
    super(file, sync);
  }

  static async create(file: LocalFile, o: VhdWriterOptions): Promise<VhdFixedWriter> {
    const { size, chs } = vhdSize(o.size, o.forceSize === true);
    await file.truncate(0);
    await file.truncate(size);
    const footer = encodeFooter(size, chs, DISK_FIXED, o.forceSize === true);
    return new VhdFixedWriter(file, size, footer, o.sync === true);
  }

  protected override async writeAt(buf: Uint8Array, offset: number): Promise<void> {
    await this.file.write(buf, offset);
  }

  protected override async zeroAt(offset: number, length: number): Promise<void> {
    await this.file.zero(offset, length, true);
  }

  protected async complete(): Promise<void> {
    await this.file.write(this.footer, this.size);
  }
}
