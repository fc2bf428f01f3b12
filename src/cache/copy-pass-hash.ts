/**
 * blkhash computed from the buffers the copy engine already holds, so the converted file is
 * never read again. The engine hands over data work items (any order, any alignment) and the
 * ranges it knows read as zero. Whole blocks are copied into batches that the checksum's
 * worker pool hashes (the calling thread only copies); a block cut across items is assembled
 * first. Only digests of data blocks are kept (32 bytes each); everything else is Z, and a
 * range given as zero is never hashed at all.
 */
import { availableParallelism } from 'node:os';
import { CorruptImageError } from '../errors.js';
import { le64 } from '../ops/checksum/blkhash.js';
import { BlockDigester, type BlockHasher, HashPool } from '../ops/checksum/index.js';
import type { CopyTap } from '../ops/copy/index.js';

interface PartialBlock {
  buf: Buffer;
  covered: number;
}

interface Batch {
  bytes: Uint8Array;
  /** The block index of each block in `bytes`, in order. */
  blocks: number[];
}

export interface CopyPassHashOptions {
  /** Who hashes the batches (default: the process-wide worker pool). */
  hasher?: BlockHasher;
  /** Bytes per batch handed to the hasher (a multiple of the block size; default 2 MiB). */
  batchBytes?: number;
  /** Batches being hashed before room() makes the copy wait (default 8). */
  inFlight?: number;
}

/** A tap that may ask the copy to wait before it reads more (bounded hashing memory). */
export interface PacedTap extends CopyTap {
  room(): Promise<void> | undefined;
  /** Optional: hashes bytes in shared memory where they are (see CopyPassHash.dataShared). */
  dataShared?(buf: Uint8Array, offset: number): Promise<void> | undefined;
  /** The block size dataShared aligns to. */
  readonly blockSize?: number;
}

export class CopyPassHash implements PacedTap {
  readonly digester = new BlockDigester();
  readonly blockSize = this.digester.blockSize;
  private readonly bs = this.blockSize;
  private readonly hasher: BlockHasher;
  private readonly batchBytes: number;
  private readonly inFlight: number;
  private readonly digests = new Map<number, Uint8Array>();
  private readonly partial = new Map<number, PartialBlock>();
  private batch: Batch | undefined;
  private readonly free: ArrayBuffer[] = [];
  private readonly pending = new Set<Promise<void>>();
  private waiters: (() => void)[] = [];
  private failure: Error | undefined;
  /** Bytes passed to the block hash (all-zero full blocks are not hashed). */
  hashedBytes = 0;

  constructor(
    readonly size: number,
    opts: CopyPassHashOptions = {},
  ) {
    this.hasher = opts.hasher ?? copyPassPool();
    const blocks = Math.max(1, Math.floor((opts.batchBytes ?? 2 * 1024 * 1024) / this.bs));
    this.batchBytes = blocks * this.bs;
    this.inFlight = Math.max(1, opts.inFlight ?? 4);
  }

  /** The image's bytes at `offset` (a data item the engine read; copied, not kept). */
  data(buf: Uint8Array, offset: number): void {
    this.cover(offset, buf.length, buf);
  }

  /**
   * Like data(), for bytes in a SharedArrayBuffer whose byte 0 is a block boundary of the
   * image (`offset - buf.byteOffset` is a multiple of the block size): the pool's workers
   * hash the whole blocks where they are, so this thread copies only a cut block at either
   * end. The bytes must stay unchanged until the returned promise settles (it never
   * rejects: a failure surfaces at digest()); undefined when everything was copied.
   */
  dataShared(buf: Uint8Array, offset: number): Promise<void> | undefined {
    const bs = this.bs;
    const base = offset - buf.byteOffset;
    const first = Math.ceil(offset / bs);
    const end = Math.floor((offset + buf.length) / bs);
    if (!(buf.buffer instanceof SharedArrayBuffer) || base % bs !== 0 || end <= first) {
      this.data(buf, offset);
      return undefined;
    }
    const head = first * bs - offset;
    const tail = end * bs - offset;
    if (head > 0) this.cover(offset, head, buf.subarray(0, head));
    if (tail < buf.length) this.cover(end * bs, buf.length - tail, buf.subarray(tail));
    // Blocks before `first` in the shared buffer are not this item's: their digests are dropped.
    const skip = first - base / bs;
    return this.run(buf.buffer, end * bs - base, (digests) => this.keepFrom(first, skip, digests));
  }

  /** A range the engine knows reads as zeroes (never read). */
  zero(offset: number, length: number): void {
    this.cover(offset, length, undefined);
  }

  /**
   * A promise while as many batches as allowed are being hashed: a copy that awaits it before
   * each read keeps the hashing memory bounded. A caller that cannot wait (the copy engine's
   * tap) is bounded anyway: beyond twice the limit, batches are hashed on the calling thread.
   */
  room(): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending.size < this.inFlight) return undefined;
    return new Promise<void>((resolve) => this.waiters.push(resolve)).then(() => {
      if (this.failure) throw this.failure;
    });
  }

  /** The lowercase hex digest once every batch is hashed; every byte must have been covered. */
  async digest(): Promise<string> {
    if (this.partial.size > 0) {
      const [first] = this.partial.keys();
      throw new CorruptImageError(`copy pass hash: block ${first} was not fully covered`);
    }
    this.submit();
    while (this.pending.size > 0) await Promise.all(this.pending);
    if (this.failure) throw this.failure;
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

  /** Queues a complete block for hashing; a short last block is hashed here (it is small). */
  private finish(i: number, block: Uint8Array): void {
    if (block.length !== this.bs) {
      this.digests.set(i, this.digester.hashOne(block));
      this.hashedBytes += block.length;
      return;
    }
    if (!this.batch) {
      const buffer = this.free.pop() ?? new ArrayBuffer(this.batchBytes);
      this.batch = { bytes: new Uint8Array(buffer), blocks: [] };
    }
    const b = this.batch;
    b.bytes.set(block, b.blocks.length * this.bs);
    b.blocks.push(i);
    if (b.blocks.length * this.bs === this.batchBytes) this.submit();
  }

  /** Hands the current batch to the hasher (or hashes it here when far behind). */
  private submit(): void {
    const b = this.batch;
    if (!b || b.blocks.length === 0) return;
    this.batch = undefined;
    const length = b.blocks.length * this.bs;
    const buffer = b.bytes.buffer as ArrayBuffer;
    if (this.pending.size >= 2 * this.inFlight) {
      const out = new Uint8Array(b.blocks.length * this.digester.digestLength);
      this.hashedBytes += this.digester.hashBlocks(b.bytes, length, out);
      this.keep(b.blocks, out);
      this.free.push(buffer);
      return;
    }
    void this.run(buffer, length, (digests, returned) => {
      this.keep(b.blocks, digests);
      if (this.free.length < this.inFlight) this.free.push(returned as ArrayBuffer);
    });
  }

  /** One job for the hasher, counted in `pending` until it has settled. */
  private run(
    buffer: ArrayBufferLike,
    length: number,
    done: (digests: Uint8Array, buffer: ArrayBufferLike) => void,
  ): Promise<void> {
    const job: Promise<void> = this.hasher.hash(this.digester, buffer, length).then(
      (r) => {
        this.hashedBytes += r.hashedBytes;
        done(r.digests, r.buffer);
      },
      (err: Error) => {
        this.failure ??= err;
      },
    );
    this.pending.add(job);
    return job.finally(() => {
      this.pending.delete(job);
      const w = this.waiters.shift();
      w?.();
    });
  }

  /** Keeps digests[skip..] as those of blocks first, first + 1, ... */
  private keepFrom(first: number, skip: number, digests: Uint8Array): void {
    const dl = this.digester.digestLength;
    const z = this.digester.zeroDigest;
    for (let k = skip; k * dl < digests.length; k++) {
      const d = digests.subarray(k * dl, (k + 1) * dl);
      if (!z.equals(d)) this.digests.set(first + k - skip, d);
    }
  }

  /** Keeps the digests of data blocks; Z (a zero block) is implied by absence. */
  private keep(blocks: number[], digests: Uint8Array): void {
    const dl = this.digester.digestLength;
    const z = this.digester.zeroDigest;
    for (let k = 0; k < blocks.length; k++) {
      const d = digests.subarray(k * dl, (k + 1) * dl);
      if (!z.equals(d)) this.digests.set(blocks[k]!, d);
    }
  }
}

let copyPool: HashPool | undefined;

/**
 * The process-wide pool copy passes hash on: half the cores (at least one). A copy pass hashes
 * each data byte once (~1.2 GB/s per thread with SHA extensions) while the decode pool, one
 * worker per core, and the copy itself use the others; each worker more costs ~0.1 s of CPU to
 * boot and ~5 MiB (a pull on 2 cores booted 5 workers, now 4).
 */
export function copyPassPool(): HashPool {
  copyPool ??= new HashPool(Math.max(1, Math.floor(availableParallelism() / 2)));
  return copyPool;
}

/**
 * Starts the hasher's workers now (one tiny job each), so that they are up when the first
 * data arrives: a pull calls it as soon as the download's first bytes name an image format.
 */
export function startHashWorkers(hasher: BlockHasher = copyPassPool()): void {
  const d = new BlockDigester();
  for (let i = 0; i < hasher.threads; i++) {
    hasher.hash(d, new ArrayBuffer(d.blockSize), d.blockSize).catch(() => {});
  }
}
