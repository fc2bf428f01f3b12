import { NotCapableError, OutOfRangeError } from '../errors.js';
import { READ_ONLY } from './capabilities.js';
import { clipExtents } from './extents.js';
import type { Capabilities, Extent, Image, ZeroOptions } from './types.js';

/** Throws unless [offset, offset+length) is a valid range inside an image of `size` bytes. */
export function checkRange(offset: number, length: number, size: number, who: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new OutOfRangeError(`${who}: invalid range offset=${offset} length=${length}`);
  }
  if (offset + length > size) {
    throw new OutOfRangeError(
      `${who}: range ${offset}+${length} is past the end of the image (${size} bytes)`,
    );
  }
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

/**
 * The shared base every format and source builds on (like nbdkit's backend.c): bounds checks,
 * capability checks, zero emulation and default "all data" extents live here once, so a format
 * implements only `readAt` and what it really knows (`extentsAt`, `writeAt`, ...).
 *
 * The `*At` hooks are only called with ranges already checked to lie inside the image.
 * `extentsAt` may return extents that start before or end after the requested range (as
 * qemu's block_status may return a larger pnum); the base clips and checks them.
 */
export abstract class BaseImage implements Image {
  abstract readonly format: string;
  abstract readonly size: number;
  readonly capabilities: Readonly<Capabilities> = READ_ONLY;
  backing?: Image | undefined;

  protected abstract readAt(buf: Uint8Array, offset: number): Promise<void>;

  protected extentsAt?(offset: number, length: number): AsyncIterable<Extent>;
  protected writeAt?(buf: Uint8Array, offset: number): Promise<void>;
  protected zeroAt?(offset: number, length: number, opts: ZeroOptions): Promise<void>;
  protected trimAt?(offset: number, length: number): Promise<void>;
  protected flushAll?(): Promise<void>;

  /** A short name for messages: the format and, where known, the file. */
  get label(): string {
    return this.format;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    checkRange(offset, buf.length, this.size, this.label);
    if (buf.length > 0) await this.readAt(buf, offset);
  }

  extents(offset = 0, length = this.size - offset): AsyncIterable<Extent> {
    checkRange(offset, length, this.size, this.label);
    if (length === 0) return emptyIterable();
    if (!this.extentsAt || !this.capabilities.extents) {
      return singleExtent({ offset, length, zero: false, hole: false });
    }
    return clipExtents(this.extentsAt(offset, length), offset, offset + length, this.label);
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (!this.capabilities.write || !this.writeAt) {
      throw new NotCapableError(`${this.label}: image is read-only`);
    }
    checkRange(offset, buf.length, this.size, this.label);
    if (buf.length > 0) await this.writeAt(buf, offset);
  }

  /** Zeroes a range: natively when the format can, else by writing zero buffers. */
  async zero(offset: number, length: number, opts: ZeroOptions = {}): Promise<void> {
    if (!this.capabilities.write) throw new NotCapableError(`${this.label}: image is read-only`);
    checkRange(offset, length, this.size, this.label);
    if (length === 0) return;
    if (this.zeroAt && this.capabilities.zero) return this.zeroAt(offset, length, opts);
    for (let done = 0; done < length; ) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      await this.writeAt!(ZERO_CHUNK.subarray(0, n), offset + done);
      done += n;
    }
  }

  async trim(offset: number, length: number): Promise<void> {
    if (!this.capabilities.write) throw new NotCapableError(`${this.label}: image is read-only`);
    checkRange(offset, length, this.size, this.label);
    // Trim is advisory: an image that cannot deallocate simply keeps the data.
    if (length > 0 && this.trimAt && this.capabilities.trim) await this.trimAt(offset, length);
  }

  async flush(): Promise<void> {
    if (this.flushAll && this.capabilities.flush) await this.flushAll();
  }

  abstract close(): Promise<void>;
}

async function* emptyIterable(): AsyncIterable<Extent> {}

async function* singleExtent(e: Extent): AsyncIterable<Extent> {
  yield e;
}

/**
 * A filter: forwards every call to `next` unless it overrides it (nbdkit filters, undici
 * interceptors). Subclasses change only what they must.
 */
export class ImageWrapper implements Image {
  constructor(protected readonly next: Image) {}
  get format(): string {
    return this.next.format;
  }
  get size(): number {
    return this.next.size;
  }
  get capabilities(): Readonly<Capabilities> {
    return this.next.capabilities;
  }
  get backing(): Image | undefined {
    return this.next.backing;
  }
  read(buf: Uint8Array, offset: number): Promise<void> {
    return this.next.read(buf, offset);
  }
  extents(offset?: number, length?: number): AsyncIterable<Extent> {
    return this.next.extents(offset, length);
  }
  write(buf: Uint8Array, offset: number): Promise<void> {
    if (!this.next.write) throw new NotCapableError(`${this.format}: image is read-only`);
    return this.next.write(buf, offset);
  }
  zero(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    if (!this.next.zero) throw new NotCapableError(`${this.format}: image is read-only`);
    return this.next.zero(offset, length, opts);
  }
  trim(offset: number, length: number): Promise<void> {
    return this.next.trim ? this.next.trim(offset, length) : Promise.resolve();
  }
  flush(): Promise<void> {
    return this.next.flush ? this.next.flush() : Promise.resolve();
  }
  close(): Promise<void> {
    return this.next.close();
  }
}
