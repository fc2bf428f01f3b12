/**
 * The shared part of the vmdk, vhd, vhdx and vdi writers: each of those formats maps fixed-size
 * guest blocks to host offsets through one table, allocates a block when data first arrives
 * and appends it to the file. This base does the mapping, the allocation (synchronous, so
 * writes in flight never race for space) and the writes; a format adds its block prefix (the
 * VHD sector bitmap) and writes its headers and tables when the image is closed.
 *
 * The unwritten parts of a block are left as file holes (they read as zeroes), so the output
 * is as sparse as the data; zeroes never allocate a block.
 */
import { OutOfRangeError } from '../errors.js';
import { capabilities } from '../image/capabilities.js';
import { isZero } from '../io/bytes.js';
import type { LocalFile } from '../io/file.js';
import { FileWriter } from './file-writer.js';

const CAPS = capabilities({ write: true, zero: true });

/** Block map entries per page: the map grows with the data, not with the virtual size. */
const PAGE = 1 << 16;

export interface BlockLayout {
  /** Guest-visible size in bytes. */
  size: number;
  /** Guest bytes per block. */
  blockSize: number;
  /** Host offset of the first block (after the headers and tables). */
  dataStart: number;
  /** Host bytes before a block's data (the VHD sector bitmap); default 0. */
  prefix?: number;
  /** Largest host offset a block may start at (the table's field width). */
  maxHostOffset?: number;
}

export abstract class BlockMapWriter extends FileWriter<LocalFile> {
  override readonly capabilities = CAPS;
  readonly size: number;
  readonly blockSize: number;
  protected readonly blocks: number;
  private readonly prefix: number;
  private readonly span: number;
  private readonly maxHost: number;
  private readonly pages = new Map<number, Float64Array>();
  /** Host end of the allocated blocks. */
  protected end: number;
  private allocated = 0;

  protected constructor(file: LocalFile, layout: BlockLayout, sync = false) {
    super(file, sync);
    this.size = layout.size;
    this.blockSize = layout.blockSize;
    this.blocks = Math.ceil(layout.size / layout.blockSize);
    this.prefix = layout.prefix ?? 0;
    this.span = this.prefix + layout.blockSize;
    this.end = layout.dataStart;
    this.maxHost = layout.maxHostOffset ?? Number.MAX_SAFE_INTEGER;
  }

  /** Blocks allocated so far. */
  get allocatedBlocks(): number {
    return this.allocated;
  }

  /** The host offset of block `b` (its prefix included), or undefined when not allocated. */
  protected hostOf(b: number): number | undefined {
    const v = this.pages.get(Math.floor(b / PAGE))?.[b % PAGE];
    return v ? v - 1 : undefined;
  }

  /** The bytes a newly allocated block starts with (the VHD sector bitmap), if any. */
  protected blockPrefix(): Uint8Array | undefined {
    return undefined;
  }

  /** Assigns block `b` the next host span; the prefix write (if any) joins `writes`. */
  private allocate(b: number, writes: Promise<void>[]): number {
    const host = this.end;
    if (host > this.maxHost) {
      throw new OutOfRangeError(
        `${this.label}: the image is full (the ${this.format} tables cannot address more data)`,
      );
    }
    this.end += this.span;
    this.allocated++;
    const p = Math.floor(b / PAGE);
    let page = this.pages.get(p);
    if (!page) {
      page = new Float64Array(PAGE);
      this.pages.set(p, page);
    }
    page[b % PAGE] = host + 1;
    const prefix = this.blockPrefix();
    if (prefix) writes.push(this.file.write(prefix, host));
    return host;
  }

  protected override async writeAt(buf: Uint8Array, offset: number): Promise<void> {
    const writes: Promise<void>[] = [];
    const bs = this.blockSize;
    for (let pos = 0; pos < buf.length; ) {
      const b = Math.floor((offset + pos) / bs);
      const within = offset + pos - b * bs;
      const n = Math.min(bs - within, buf.length - pos);
      const piece = buf.subarray(pos, pos + n);
      pos += n;
      let host = this.hostOf(b);
      if (host === undefined) {
        if (isZero(piece)) continue;
        host = this.allocate(b, writes);
      }
      writes.push(this.file.write(piece, host + this.prefix + within));
    }
    await Promise.all(writes);
  }

  /** Zeroes inside allocated blocks are punched (or written); unallocated blocks read zero. */
  protected override async zeroAt(offset: number, length: number): Promise<void> {
    const bs = this.blockSize;
    for (let pos = offset; pos < offset + length; ) {
      const b = Math.floor(pos / bs);
      const within = pos - b * bs;
      const n = Math.min(bs - within, offset + length - pos);
      const host = this.hostOf(b);
      if (host !== undefined) await this.file.zero(host + this.prefix + within, n, true);
      pos += n;
    }
  }

  /** Writes the format's headers and tables; the blocks end at `this.end`. */
  protected abstract finish(): Promise<void>;

  protected async complete(): Promise<void> {
    await this.file.truncate(this.end);
    await this.finish();
  }
}
