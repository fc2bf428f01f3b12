/** FLAT/VMFS extents (a plain range of a file) and ZERO extents (no file at all). */
import { CorruptImageError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { hostRuns } from '../host-io.js';
import type { Run, VmdkExtent } from './extent.js';

export class FlatExtent implements VmdkExtent {
  readonly clusterSize = undefined;
  readonly compressed = false;

  private constructor(
    readonly type: string,
    readonly file: ByteSource,
    readonly size: number,
    /** Byte offset of the extent's first byte in the file. */
    private readonly start: number,
  ) {}

  /** Checks that the file really holds the extent's bytes. */
  static open(type: string, file: ByteSource, size: number, start: number): FlatExtent {
    if (start + size > file.size) {
      throw new CorruptImageError(
        `${file.name}: flat extent needs ${start + size} bytes but the file has ${file.size}`,
      );
    }
    return new FlatExtent(type, file, size, start);
  }

  async *runs(offset: number, length: number): AsyncIterable<Run> {
    for (const h of hostRuns(this.file, this.start + offset, length)) {
      yield {
        offset: h.offset - this.start,
        length: h.length,
        kind: 'data',
        hostOffset: h.offset,
        ...(h.hole ? { hostHole: true } : {}),
      };
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    const n = await this.file.read(buf, this.start + offset);
    if (n !== buf.length) {
      throw new CorruptImageError(`${this.file.name}: file ended while reading a flat extent`);
    }
  }
}

export class ZeroExtent implements VmdkExtent {
  readonly type = 'ZERO';
  readonly file = undefined;
  readonly clusterSize = undefined;
  readonly compressed = false;

  constructor(readonly size: number) {}

  async *runs(offset: number, length: number): AsyncIterable<Run> {
    yield { offset, length, kind: 'zero' };
  }

  async read(buf: Uint8Array): Promise<void> {
    buf.fill(0);
  }
}
