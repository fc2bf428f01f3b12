/**
 * blkhash computed from the buffers the copy engine already holds, so the converted file is
 * never read again. The engine hands over data work items (any order, any alignment) and the
 * ranges it knows read as zero; a blkhash block is hashed as soon as all its bytes were seen.
 * Only digests of data blocks are kept (32 bytes each); everything else is Z.
 */
import { CorruptImageError } from '../errors.js';
import { le64 } from '../ops/checksum/blkhash.js';
import { BlockDigester } from '../ops/checksum/index.js';

interface PartialBlock {
  buf: Buffer;
  covered: number;
}

export class CopyPassHash {
  readonly digester = new BlockDigester();
  private readonly bs = this.digester.blockSize;
  private readonly digests = new Map<number, Buffer>();
  private readonly partial = new Map<number, PartialBlock>();
  /** Bytes passed to the block hash (all-zero full blocks are not hashed). */
  hashedBytes = 0;

  constructor(readonly size: number) {}

  /** The image's bytes at `offset` (a data item the engine read). */
  data(buf: Uint8Array, offset: number): void {
    this.cover(offset, buf.length, buf);
  }

  /** A range the engine knows reads as zeroes (never read). */
  zero(offset: number, length: number): void {
    this.cover(offset, length, undefined);
  }

  /** The lowercase hex digest; every byte must have been covered once. */
  digest(): string {
    if (this.partial.size > 0) {
      const [first] = this.partial.keys();
      throw new CorruptImageError(`copy pass hash: block ${first} was not fully covered`);
    }
    const outer = this.digester.newOuter();
    const blocks = Math.ceil(this.size / this.bs);
    const indexes = [...this.digests.keys()].sort((a, b) => a - b);
    let next = 0;
    for (const i of indexes) {
      this.addZeroes(outer, next, i);
      outer.update(this.digests.get(i)!);
      next = i + 1;
    }
    this.addZeroes(outer, next, blocks);
    outer.update(le64(this.size));
    return outer.digest('hex');
  }

  /** Blocks [from, to) that were never stored read as zero (a short last block included). */
  private addZeroes(outer: ReturnType<BlockDigester['newOuter']>, from: number, to: number): void {
    if (to <= from) return;
    const lastLength = this.blockLength(to - 1);
    if (lastLength === this.bs) {
      this.digester.addZeroBlocks(outer, to - from);
      return;
    }
    this.digester.addZeroBlocks(outer, to - 1 - from);
    outer.update(this.digester.hashOne(new Uint8Array(lastLength)));
  }

  private blockLength(i: number): number {
    return Math.min(this.bs, this.size - i * this.bs);
  }

  private cover(offset: number, length: number, data: Uint8Array | undefined): void {
    const bs = this.bs;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const i = Math.floor(pos / bs);
      const blockStart = i * bs;
      const blockLength = this.blockLength(i);
      const stop = Math.min(end, blockStart + blockLength);
      const whole = pos === blockStart && stop === blockStart + blockLength;
      if (whole && !this.partial.has(i)) {
        if (data) this.finish(i, data.subarray(pos - offset, stop - offset));
      } else {
        let p = this.partial.get(i);
        if (!p) {
          p = { buf: Buffer.alloc(blockLength), covered: 0 };
          this.partial.set(i, p);
        }
        if (data) p.buf.set(data.subarray(pos - offset, stop - offset), pos - blockStart);
        p.covered += stop - pos;
        if (p.covered >= blockLength) {
          this.partial.delete(i);
          this.finish(i, p.buf);
        }
      }
      pos = stop;
    }
  }

  /** Stores the digest of a complete block unless it is a full zero block (Z is implied). */
  private finish(i: number, block: Uint8Array): void {
    const out = Buffer.allocUnsafe(this.digester.digestLength);
    const hashed = this.digester.hashBlocks(block, block.length, out);
    this.hashedBytes += hashed;
    if (block.length === this.bs && hashed === 0) return;
    this.digests.set(i, out);
  }
}
