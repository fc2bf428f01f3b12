import { CorruptImageError } from '../errors.js';
import { BaseImage } from '../image/base.js';
import { capabilities } from '../image/capabilities.js';
import { entryOf } from '../image/extents.js';
import type {
  ByteSource,
  Capabilities,
  Extent,
  FormatDetails,
  MapEntry,
  SourceWriter,
  ZeroOptions,
} from '../image/types.js';
import { LocalFile } from '../io/file.js';
import type { FormatDriver } from './registry.js';

/**
 * A raw image: the bytes of its source, exact size (no rounding to 512 as qemu does).
 * On a local file, extents come from SEEK_DATA/SEEK_HOLE; holes read as zeroes. Other sources
 * that know their allocation (NBD base:allocation) provide `extents`, and a writable one a
 * `writer` that writes go to.
 */
export class RawImage extends BaseImage {
  readonly format = 'raw';
  override readonly capabilities: Readonly<Capabilities>;
  private readonly writer: SourceWriter | undefined;

  constructor(readonly source: ByteSource) {
    super();
    const file = source instanceof LocalFile ? source : undefined;
    this.writer = file ? undefined : source.writer;
    const writable = (file?.writable ?? false) || this.writer !== undefined;
    const extents = file !== undefined || source.extents !== undefined;
    this.capabilities = capabilities({
      write: writable,
      zero: writable,
      trim: writable,
      flush: writable,
      extents,
    });
  }

  get size(): number {
    return this.source.size;
  }

  override get label(): string {
    return this.source.name;
  }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    const n = await this.source.read(buf, offset);
    if (n !== buf.length) {
      throw new CorruptImageError(`${this.label}: file ended at ${offset + n} while reading`);
    }
  }

  protected override async *extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    if (!(this.source instanceof LocalFile)) {
      yield* this.source.extents!(offset, length);
      return;
    }
    for (const h of this.source.runs(offset, length)) {
      yield { offset: h.offset, length: h.length, zero: h.hole, hole: h.hole };
    }
  }

  /** qemu-img map for raw: every range is present at depth 0 with its own host offset. */
  async *mapping(offset: number, length: number): AsyncIterable<MapEntry> {
    for await (const e of this.extents(offset, length)) {
      yield entryOf(e, { depth: 0, present: true, data: !e.zero, hostOffset: e.offset });
    }
  }

  describe(): FormatDetails {
    return { format: 'raw', virtualSize: this.size };
  }

  protected override writeAt(buf: Uint8Array, offset: number): Promise<void> {
    if (this.writer) return this.writer.write(buf, offset);
    return (this.source as LocalFile).write(buf, offset);
  }

  protected override zeroAt(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    if (this.writer) return this.writer.zero(offset, length, opts.mayTrim ?? false);
    return (this.source as LocalFile).zero(offset, length, opts.mayTrim ?? false);
  }

  protected override async trimAt(offset: number, length: number): Promise<void> {
    if (this.writer) return this.writer.trim(offset, length);
    await (this.source as LocalFile).trim(offset, length);
  }

  protected override flushAll(): Promise<void> {
    if (this.writer) return this.writer.flush();
    return (this.source as LocalFile).sync();
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

export const rawDriver: FormatDriver = {
  name: 'raw',
  probe: () => true,
  open: async (source) => new RawImage(source),
};
