/**
 * The parallel side of blkhash: windows of blocks are hashed out of order (worker pool), runs
 * of zero blocks cost nothing, and the outer hash consumes every block digest strictly in block
 * order. Memory is bounded: at most `inFlight` window buffers exist, reused as they come back.
 */
import type { Hash } from 'node:crypto';
import { UsageError } from '../../errors.js';
import { type BlockDigester, le64 } from './blkhash.js';
import type { BlockHasher, FileRange, HashResult } from './pool.js';

export interface OrderedOptions {
  /** Bytes per window (a multiple of the block size). */
  windowSize: number;
  /** Windows being read or hashed at once. */
  inFlight: number;
  /** Called as bytes are accounted for, in order. */
  onProgress?: ((done: number, total: number | undefined) => void) | undefined;
  /** Total bytes expected, passed to onProgress. */
  total?: number | undefined;
}

type Item =
  | { kind: 'zero'; count: number }
  /** `window`: the result's buffer is a window to reuse (not for file ranges). */
  | { kind: 'data'; length: number; result: Promise<HashResult>; window: boolean };

export class OrderedBlkHash {
  readonly windowSize: number;
  private readonly inFlight: number;
  private readonly outer: Hash;
  private readonly queue: Item[] = [];
  private readonly free: SharedArrayBuffer[] = [];
  private buffers = 0;
  private total = 0;
  private done = 0;
  private shortBlockSeen = false;
  private finished = false;
  private consuming: Promise<void> | undefined;
  /** Bytes hashed as data (all-zero blocks, found or given, are not hashed). */
  hashedBytes = 0;

  constructor(
    readonly digester: BlockDigester,
    private readonly hasher: BlockHasher,
    private readonly opts: OrderedOptions,
  ) {
    const bs = digester.blockSize;
    if (!Number.isSafeInteger(opts.windowSize) || opts.windowSize < bs || opts.windowSize % bs) {
      throw new UsageError(`window size ${opts.windowSize} is not a multiple of the block size`);
    }
    if (!Number.isSafeInteger(opts.inFlight) || opts.inFlight < 1) {
      throw new UsageError(`invalid in-flight window count ${opts.inFlight}`);
    }
    this.windowSize = opts.windowSize;
    this.inFlight = opts.inFlight;
    this.outer = digester.newOuter();
  }

  /** Bytes submitted so far (data windows and zero blocks). */
  get length(): number {
    return this.total;
  }

  /**
   * A window buffer to fill (`windowSize` bytes, stale contents). Waits, consuming finished
   * windows in order, while all `inFlight` buffers are in use. Windows are shared memory: a
   * decode worker inflates compressed clusters straight into them and a hash worker reads
   * them in place (no staging copy, no transfer).
   */
  async acquire(): Promise<Uint8Array> {
    for (;;) {
      this.consumeZeroes();
      const buf = this.free.pop();
      if (buf) return new Uint8Array(buf);
      if (this.buffers < this.inFlight) {
        this.buffers++;
        return new Uint8Array(new SharedArrayBuffer(this.windowSize));
      }
      await this.consumeHead();
    }
  }

  /**
   * Queues a window from acquire(): its first `length` bytes are hashed once `ready` settles
   * (the filling read). Every window but the last must hold whole blocks.
   */
  submit(window: Uint8Array, length: number, ready?: Promise<void>): void {
    this.checkAppend(length);
    if (window.byteOffset !== 0 || window.byteLength !== this.windowSize) {
      throw new UsageError('submit() takes a whole buffer from acquire()');
    }
    if (length > this.windowSize) throw new UsageError('window length exceeds the window size');
    const buffer = window.buffer;
    if (!(buffer instanceof SharedArrayBuffer)) {
      throw new UsageError('submit() takes a whole buffer from acquire()');
    }
    const start = () => this.hasher.hash(this.digester, buffer, length);
    const result = ready ? ready.then(start) : start();
    // Failures surface when the window is consumed; never as an unhandled rejection.
    result.catch(() => {});
    this.queue.push({ kind: 'data', length, result, window: true });
    this.total += length;
  }

  /** Whether the hasher can read file ranges itself (submitFile). */
  get readsFiles(): boolean {
    return this.hasher.hashFile !== undefined;
  }

  /**
   * Queues `length` bytes of a local file, read and hashed by the hasher itself (no window
   * buffer). At most `inFlight` data jobs are outstanding: waits, consuming in order, past
   * that. Same block rules as submit().
   */
  async submitFile(file: FileRange, length: number): Promise<void> {
    if (!this.hasher.hashFile) throw new UsageError('this hasher cannot read files');
    this.checkAppend(length);
    while (this.outstanding() >= this.inFlight) await this.consumeHead();
    const result = this.hasher.hashFile(this.digester, file, length);
    result.catch(() => {});
    this.queue.push({ kind: 'data', length, result, window: false });
    this.total += length;
  }

  /**
   * Waits until no queued job still runs (reads or hashes), ignoring failures: a caller that
   * failed must not close the image while a worker still reads from it.
   */
  async settle(): Promise<void> {
    await Promise.allSettled(this.queue.map((i) => (i.kind === 'data' ? i.result : undefined)));
  }

  private outstanding(): number {
    let n = 0;
    for (const item of this.queue) if (item.kind === 'data') n++;
    return n;
  }

  /** Adds `count` full blocks known to read as zeroes (no data, no hashing). */
  zeroBlocks(count: number): void {
    if (count <= 0) return;
    this.checkAppend(0);
    const last = this.queue.at(-1);
    if (last?.kind === 'zero') last.count += count;
    else this.queue.push({ kind: 'zero', count });
    this.total += count * this.digester.blockSize;
  }

  /** Waits for every window, then returns the final digest. */
  async digest(): Promise<Buffer> {
    if (this.finished) throw new UsageError('blkhash: digest() was already called');
    while (this.queue.length > 0) await this.consumeHead();
    this.finished = true;
    this.outer.update(le64(this.total));
    return this.outer.digest();
  }

  private checkAppend(length: number): void {
    if (this.finished) throw new UsageError('blkhash: digest() was already called');
    if (this.shortBlockSeen) throw new UsageError('only the last window may end inside a block');
    if (length % this.digester.blockSize !== 0) this.shortBlockSeen = true;
  }

  private consumeZeroes(): void {
    while (this.queue[0]?.kind === 'zero') {
      const item = this.queue.shift() as { kind: 'zero'; count: number };
      this.digester.addZeroBlocks(this.outer, item.count);
      this.advance(item.count * this.digester.blockSize);
    }
  }

  /** Consumes the oldest window (one at a time, even with several callers waiting). */
  private consumeHead(): Promise<void> {
    this.consuming ??= this.consumeOne().finally(() => {
      this.consuming = undefined;
    });
    return this.consuming;
  }

  private async consumeOne(): Promise<void> {
    this.consumeZeroes();
    const item = this.queue[0];
    if (item?.kind !== 'data') return;
    const r = await item.result;
    this.queue.shift();
    this.outer.update(r.digests);
    this.hashedBytes += r.hashedBytes;
    if (item.window) this.free.push(r.buffer as SharedArrayBuffer);
    this.advance(item.length);
  }

  private advance(bytes: number): void {
    this.done += bytes;
    this.opts.onProgress?.(this.done, this.opts.total);
  }
}
