/**
 * What a copy-on-write overlay holds, block by block: data blocks (in memory up to a byte limit,
 * then in a temporary file) and runs of blocks known to be zero (kept as ranges, so zeroing a
 * whole disk costs one entry). A data block takes precedence over a zero run that covers it.
 *
 * The temporary file is unlinked as soon as it is created, so it disappears when the process
 * ends however it ends; blocks live in it at `index * blockSize` (sparse).
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ioError } from '../errors.js';
import { punchBlock } from '../io/native.js';
import { RunSet } from '../io/run-set.js';

export interface CowStoreOptions {
  blockSize: number;
  /** Bytes of block data kept in memory before spilling to the temporary file. */
  memoryLimit: number;
  /** Directory for the temporary file (default: the system temporary directory). */
  tempDir?: string;
}

const IN_FILE = 'file';

export type BlockState = 'data' | 'zero' | undefined;

export class CowStore {
  private readonly blocks = new Map<number, Uint8Array | typeof IN_FILE>();
  private readonly zeroRuns = new RunSet();
  private sorted: number[] | undefined = [];
  private file: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private memory = 0;

  constructor(private readonly opts: CowStoreOptions) {}

  get count(): number {
    return this.blocks.size;
  }

  /** Bytes of block data held in memory. */
  get memoryUsed(): number {
    return this.memory;
  }

  /** Blocks held in the temporary file. */
  get spilled(): number {
    let n = 0;
    for (const b of this.blocks.values()) if (b === IN_FILE) n++;
    return n;
  }

  /** Nothing written yet: every block still reads from the image below. */
  get empty(): boolean {
    return this.blocks.size === 0 && this.zeroRuns.size === 0;
  }

  state(index: number): BlockState {
    if (this.blocks.has(index)) return 'data';
    return this.zeroRuns.contains(index) ? 'zero' : undefined;
  }

  /** Marks blocks [first, last) as zero, dropping their data. */
  zeroBlocks(first: number, last: number): void {
    for (const i of this.indicesIn(first, last)) this.delete(i);
    this.zeroRuns.add(first, last);
  }

  /** The first block at or after `index` the overlay holds anything for. */
  nextOwned(index: number): number | undefined {
    if (this.zeroRuns.contains(index)) return index;
    const data = this.nextIndex(index);
    const zero = this.zeroRuns.nextStart(index);
    if (data === undefined) return zero;
    return zero === undefined ? data : Math.min(data, zero);
  }

  /** End (exclusive, at most `limit`) of the run of blocks from `index` in the same state. */
  runEnd(index: number, limit: number): number {
    const state = this.state(index);
    if (state === 'zero') {
      return Math.min(this.zeroRuns.endOf(index), this.nextIndex(index + 1) ?? limit, limit);
    }
    this.sorted ??= [...this.blocks.keys()].sort((a, b) => a - b);
    let k = lowerBound(this.sorted, index);
    let end = index;
    while (end < limit && this.sorted[k] === end) {
      end++;
      k++;
    }
    return end;
  }

  /** Copies block `index` into `into` (its length is the block's length). */
  async get(index: number, into: Uint8Array): Promise<void> {
    const b = this.blocks.get(index);
    if (b === undefined) throw new Error(`overlay block ${index} is not stored`);
    if (b !== IN_FILE) {
      into.set(b.subarray(0, into.length));
      return;
    }
    const file = this.file!;
    try {
      let done = 0;
      while (done < into.length) {
        const at = index * this.opts.blockSize + done;
        const { bytesRead } = await file.read(into, done, into.length - done, at);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      into.fill(0, done);
    } catch (err) {
      throw ioError(err, 'cannot read the overlay spill file');
    }
  }

  /** Stores a whole block (the store keeps its own copy). */
  async put(index: number, data: Uint8Array): Promise<void> {
    const b = this.blocks.get(index);
    if (b instanceof Uint8Array) {
      b.set(data);
      return;
    }
    if (b === undefined && this.memory + data.length <= this.opts.memoryLimit) {
      // A real copy: callers pass views of buffers they reuse (the NBD server's receive pool),
      // and Buffer#slice would return a view, not a copy.
      this.blocks.set(index, new Uint8Array(data));
      this.memory += data.length;
      this.sorted = undefined;
      return;
    }
    const file = await this.spillFile();
    try {
      let done = 0;
      while (done < data.length) {
        const at = index * this.opts.blockSize + done;
        const { bytesWritten } = await file.write(data, done, data.length - done, at);
        done += bytesWritten;
      }
    } catch (err) {
      throw ioError(err, 'cannot write the overlay spill file');
    }
    if (b === undefined) this.sorted = undefined;
    this.blocks.set(index, IN_FILE);
  }

  /** Forgets a data block (its range is now described elsewhere, e.g. as zeroes). */
  private delete(index: number): void {
    const b = this.blocks.get(index);
    if (b === undefined) return;
    this.blocks.delete(index);
    this.sorted = undefined;
    if (b === IN_FILE) {
      const size = this.opts.blockSize;
      try {
        punchBlock(this.file!.fd, index * size, size); // give the space back where we can
      } catch {
        // the block is forgotten either way
      }
    } else {
      this.memory -= b.length;
    }
  }

  /** Data block indices in [first, last), ascending. */
  private indicesIn(first: number, last: number): number[] {
    this.sorted ??= [...this.blocks.keys()].sort((a, b) => a - b);
    const s = this.sorted;
    const from = lowerBound(s, first);
    const to = lowerBound(s, last);
    return s.slice(from, to);
  }

  /** The first data block index at or after `index`, if any. */
  private nextIndex(index: number): number | undefined {
    this.sorted ??= [...this.blocks.keys()].sort((a, b) => a - b);
    return this.sorted[lowerBound(this.sorted, index)];
  }

  async close(): Promise<void> {
    this.blocks.clear();
    this.zeroRuns.clear();
    this.memory = 0;
    const file = this.file ?? (await this.opening?.catch(() => undefined));
    this.file = undefined;
    await file?.close();
  }

  private spillFile(): Promise<FileHandle> {
    if (this.file) return Promise.resolve(this.file);
    this.opening ??= (async () => {
      const dir = this.opts.tempDir ?? tmpdir();
      const path = join(
        dir,
        `.diskpipe-overlay-${process.pid}-${randomBytes(4).toString('hex')}.tmp`,
      );
      let handle: FileHandle;
      try {
        handle = await open(path, 'wx+', 0o600);
      } catch (err) {
        throw ioError(err, 'cannot create the overlay spill file');
      }
      // Unlinked at once: nothing is left behind, whatever way the process ends.
      await unlink(path).catch(() => {});
      this.file = handle;
      return handle;
    })();
    return this.opening;
  }
}

function lowerBound(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
