/** Test images for checksum: segments in memory with exact extents, and a read counter. */
import { BaseImage, ImageWrapper } from '../../src/image/base.js';
import type { Capabilities, Extent, Image } from '../../src/image/types.js';

/** A run of bytes: `bytes` if given, else `length` copies of `byte`; `zero` is a zero extent. */
export interface Piece {
  length: number;
  byte?: number;
  bytes?: Uint8Array;
  zero?: boolean;
}

/**
 * An image made of pieces, one extent per piece (or finer, with `cuts`). Reading any byte of
 * a zero extent is a test failure: checksum must never read what extents say is zero.
 */
export class PieceImage extends BaseImage {
  readonly format = 'pieces';
  override readonly capabilities: Readonly<Capabilities> = {
    write: false,
    zero: false,
    trim: false,
    flush: false,
    extents: true,
  };
  readonly size: number;
  private readonly starts: number[] = [];
  zeroReads = 0;

  constructor(
    private readonly pieces: Piece[],
    /** Extra extent boundaries (absolute offsets) to split extents of one kind. */
    private readonly cuts: number[] = [],
  ) {
    super();
    let pos = 0;
    for (const p of pieces) {
      this.starts.push(pos);
      pos += p.length;
    }
    this.size = pos;
  }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    const end = offset + buf.length;
    this.pieces.forEach((p, i) => {
      const s = this.starts[i]!;
      const from = Math.max(s, offset);
      const to = Math.min(s + p.length, end);
      if (to <= from) return;
      if (p.zero) this.zeroReads += to - from;
      const dst = buf.subarray(from - offset, to - offset);
      if (p.bytes) dst.set(p.bytes.subarray(from - s, to - s));
      else dst.fill(p.byte ?? 0);
    });
  }

  protected override async *extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    const end = offset + length;
    for (const [i, p] of this.pieces.entries()) {
      const s = this.starts[i]!;
      if (s + p.length <= offset || p.length === 0) continue;
      if (s >= end) return;
      const bounds = [s, ...this.cuts.filter((c) => c > s && c < s + p.length), s + p.length];
      for (let j = 0; j + 1 < bounds.length; j++) {
        const zero = p.zero === true;
        yield { offset: bounds[j]!, length: bounds[j + 1]! - bounds[j]!, zero, hole: zero };
      }
    }
  }

  async close(): Promise<void> {}
}

/** Counts the bytes read through an image (and the largest single read). */
export class CountingImage extends ImageWrapper {
  bytesRead = 0;
  reads = 0;
  largestRead = 0;

  constructor(next: Image) {
    super(next);
  }

  override read(buf: Uint8Array, offset: number): Promise<void> {
    this.bytesRead += buf.length;
    this.reads++;
    this.largestRead = Math.max(this.largestRead, buf.length);
    return super.read(buf, offset);
  }
}
