/**
 * A copy-on-write overlay: the image below is never written. Writes, zeroes and trims land in a
 * CowStore (memory up to a cap, then an unlinked temporary file), reads and extents combine the
 * overlay with the image below. Everything is per block: a write that covers part of a block
 * first copies the block up (read-modify-write), under a per-block lock so concurrent writes to
 * one block do not lose each other's bytes. Nothing is ever flushed: the overlay is throwaway.
 */
import { UsageError } from '../errors.js';
import { checkRange, ImageWrapper } from '../image/base.js';
import { capabilities } from '../image/capabilities.js';
import { mergeExtents } from '../image/extents.js';
import type { Capabilities, Extent, Image, ZeroOptions } from '../image/types.js';
import { isPowerOfTwo } from '../io/bytes.js';
import { type BlockState, CowStore } from './cow-store.js';

export interface CowOptions {
  /** Overlay granularity in bytes (a power of two; default 64 KiB). */
  blockSize?: number;
  /** Written data kept in memory before spilling to a temporary file (default 256 MiB). */
  memoryLimit?: number;
  /** Where the spill file goes (default: the system temporary directory). */
  tempDir?: string;
}

/** A piece of a request: [start, end) inside block `index` or a run from it. */
interface Piece {
  start: number;
  end: number;
  index: number;
  /** What the overlay holds there; undefined: the image below answers. */
  state: BlockState;
}

export class CowImage extends ImageWrapper {
  readonly store: CowStore;
  private readonly blockSize: number;
  private readonly locks = new Map<number, Promise<void>>();
  private readonly caps: Readonly<Capabilities>;

  constructor(next: Image, opts: CowOptions = {}) {
    super(next);
    this.blockSize = opts.blockSize ?? 64 * 1024;
    if (!isPowerOfTwo(this.blockSize) || this.blockSize < 512) {
      throw new UsageError(`overlay block size ${this.blockSize} is not a power of two ≥ 512`);
    }
    const store = { blockSize: this.blockSize, memoryLimit: opts.memoryLimit ?? 256 * 2 ** 20 };
    this.store = new CowStore(opts.tempDir ? { ...store, tempDir: opts.tempDir } : store);
    const { extents } = next.capabilities;
    this.caps = capabilities({ write: true, zero: true, trim: true, flush: true, extents });
  }

  override get capabilities(): Readonly<Capabilities> {
    return this.caps;
  }

  private blockLength(index: number): number {
    return Math.min(this.blockSize, this.size - index * this.blockSize);
  }

  override async read(buf: Uint8Array, offset: number): Promise<void> {
    checkRange(offset, buf.length, this.size, this.format);
    if (this.store.empty) return this.next.read(buf, offset);
    for (const p of this.pieces(offset, offset + buf.length, false)) {
      const into = buf.subarray(p.start - offset, p.end - offset);
      if (p.state === undefined) {
        await this.next.read(into, p.start);
      } else if (p.state === 'zero') {
        into.fill(0);
      } else if (into.length === this.blockLength(p.index)) {
        await this.store.get(p.index, into);
      } else {
        const block = new Uint8Array(this.blockLength(p.index));
        await this.store.get(p.index, block);
        const blockStart = p.index * this.blockSize;
        into.set(block.subarray(p.start - blockStart, p.end - blockStart));
      }
    }
  }

  override extents(offset = 0, length = this.size - offset): AsyncIterable<Extent> {
    checkRange(offset, length, this.size, this.format);
    if (this.store.empty) return this.next.extents(offset, length);
    return mergeExtents(this.overlayExtents(offset, offset + length));
  }

  private async *overlayExtents(start: number, end: number): AsyncIterable<Extent> {
    for (const p of this.pieces(start, end, true)) {
      if (p.state === undefined) {
        yield* this.next.extents(p.start, p.end - p.start);
        continue;
      }
      const zero = p.state === 'zero';
      yield { offset: p.start, length: p.end - p.start, zero, hole: zero };
    }
  }

  /**
   * Splits [start, end) into pieces: runs the overlay does not hold (state undefined: one call
   * below covers each) and pieces it holds, a block at a time or, with `wholeRuns`, a whole
   * run of one state. Lazy: each piece reads the store only when the caller asks for it, so
   * it sees what the caller's previous await may have changed.
   */
  private *pieces(start: number, end: number, wholeRuns: boolean): Generator<Piece> {
    const lastBlock = Math.ceil(end / this.blockSize);
    let pos = start;
    while (pos < end) {
      const index = Math.floor(pos / this.blockSize);
      const state = this.store.state(index);
      let stop: number;
      if (state === undefined) {
        const owned = this.store.nextOwned(index);
        stop = owned === undefined ? end : Math.min(end, owned * this.blockSize);
      } else if (wholeRuns) {
        stop = Math.min(end, this.store.runEnd(index, lastBlock) * this.blockSize);
      } else {
        stop = Math.min(end, index * this.blockSize + this.blockLength(index));
      }
      yield { start: pos, end: stop, index, state };
      pos = stop;
    }
  }

  override async write(buf: Uint8Array, offset: number): Promise<void> {
    checkRange(offset, buf.length, this.size, this.format);
    await this.eachBlock(offset, buf.length, (index, from, to, whole) =>
      this.locked(index, async () => {
        const part = buf.subarray(from - offset, to - offset);
        if (whole) return this.store.put(index, part);
        const block = await this.loadBlock(index);
        block.set(part, from - index * this.blockSize);
        await this.store.put(index, block);
      }),
    );
  }

  override async zero(offset: number, length: number, _opts?: ZeroOptions): Promise<void> {
    checkRange(offset, length, this.size, this.format);
    await this.zeroRange(offset, length, true);
  }

  /** Trim drops whole blocks from the overlay (they read as zeroes); partial blocks stay. */
  override async trim(offset: number, length: number): Promise<void> {
    checkRange(offset, length, this.size, this.format);
    await this.zeroRange(offset, length, false);
  }

  override async flush(): Promise<void> {}

  override async close(): Promise<void> {
    await this.store.close();
    await this.next.close();
  }

  private async zeroRange(offset: number, length: number, partial: boolean): Promise<void> {
    if (length === 0) return;
    const bs = this.blockSize;
    const end = offset + length;
    // Blocks wholly inside the range become one zero run (zeroing a whole disk is one entry).
    const first = Math.ceil(offset / bs);
    const last = end === this.size ? Math.ceil(end / bs) : Math.floor(end / bs);
    const whole = last > first;
    if (whole) await this.lockedRange(first, last, async () => this.store.zeroBlocks(first, last));
    if (!partial) return;
    const pieces = whole
      ? [
          [offset, first * bs],
          [last * bs, end],
        ]
      : [[offset, end]];
    for (const [from, to] of pieces as [number, number][]) {
      if (to > from)
        await this.eachBlock(from, to - from, (index, a, b) => this.zeroPart(index, a, b));
    }
  }

  private zeroPart(index: number, from: number, to: number): Promise<void> {
    return this.locked(index, async () => {
      if (this.store.state(index) === 'zero') return;
      const block = await this.loadBlock(index);
      const base = index * this.blockSize;
      block.fill(0, from - base, to - base);
      await this.store.put(index, block);
    });
  }

  /** The current bytes of a block: from the overlay, or copied up from the image below. */
  private async loadBlock(index: number): Promise<Uint8Array> {
    const block = new Uint8Array(this.blockLength(index));
    const state = this.store.state(index);
    if (state === 'data') await this.store.get(index, block);
    else if (state === undefined) await this.next.read(block, index * this.blockSize);
    return block;
  }

  private async eachBlock(
    offset: number,
    length: number,
    fn: (index: number, from: number, to: number, whole: boolean) => Promise<void>,
  ): Promise<void> {
    const end = offset + length;
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / this.blockSize);
      const blockStart = index * this.blockSize;
      const blockEnd = blockStart + this.blockLength(index);
      const to = Math.min(end, blockEnd);
      await fn(index, pos, to, pos === blockStart && to === blockEnd);
      pos = to;
    }
  }

  /** Runs fn once every earlier operation on block `index` has finished. */
  private locked(index: number, fn: () => Promise<void>): Promise<void> {
    const before = this.locks.get(index) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(index, tail);
    void tail.then(() => {
      if (this.locks.get(index) === tail) this.locks.delete(index);
    });
    return run;
  }

  /** Waits for operations in flight on blocks [first, last), then runs fn. */
  private async lockedRange(first: number, last: number, fn: () => Promise<void>): Promise<void> {
    const busy = [...this.locks.entries()]
      .filter(([i]) => i >= first && i < last)
      .map(([, p]) => p);
    await Promise.all(busy);
    await fn();
  }
}
