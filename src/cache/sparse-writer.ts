/**
 * Writes a byte stream to a file at increasing offsets, skipping every 4 KiB block (aligned to
 * the file, as qemu-img -S 4k) that is all zeroes: those stay holes. Bytes are staged until a
 * block is complete. `finish` writes the tail and sets the file size to the stream's end, so a
 * file that ends in zeroes still has its full length. A reader (the download's digests) may see
 * every byte from the same stages, in shared memory: the stream is copied once, into a stage.
 */
import { ioError } from '../errors.js';
import type { LocalFile } from '../io/file.js';

export const SPARSE_BLOCK = 4096;
const STAGE = 1024 * 1024;
/** Full stages waiting to be written (in order, one at a time) while the next one fills. */
const MAX_STAGES = 8;
const ZERO = Buffer.alloc(SPARSE_BLOCK);
/**
 * How often a run of skipped zeroes moves the file's size forward (the size tells a resumed
 * download where to start; writes of data move it anyway).
 */
const EXTEND_EVERY = 8 * STAGE;

/**
 * Reads a stage's new bytes by reference (the download's digests, on a worker); the stage is
 * reused only once the returned promise settles.
 */
export type StageReader = (bytes: Uint8Array) => Promise<void>;

/** Stages live in shared memory, so a worker can read them where they are. */
function newStage(): Buffer {
  return Buffer.from(new SharedArrayBuffer(STAGE + SPARSE_BLOCK));
}

export class SparseWriter {
  private stage: Buffer = newStage();
  private readonly free: Buffer[] = [];
  private stages = 1;
  /** The stages' writes, chained in file order: one at a time, so the size only grows. */
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;
  private stageReturned: (() => void) | undefined;
  private fill = 0;
  /** stage[0, lent) was given to the reader with the previous stage (an incomplete block). */
  private lent = 0;
  /** File offset of stage[0]. */
  private stageStart: number;
  /** The file size last set by extend(). */
  private extended = 0;
  /** Bytes written to the file (zero blocks not counted: they were never written). */
  written = 0;
  /**
   * Told each time the file holds every byte before `position` (readers may follow): its size
   * covers them, skipped zeroes included.
   */
  onFlushed: ((position: number) => void) | undefined;
  /** Told the length of every data write (zero blocks are not written, so not told). */
  onWrite: ((bytes: number) => void) | undefined;

  constructor(
    private readonly file: LocalFile,
    start: number,
    private readonly name: string,
    /** Sees every byte given, once and in order, from the stages (no copy). */
    private readonly reader?: StageReader,
    /** Write on this thread (see put). */
    private readonly blocking = false,
  ) {
    this.stageStart = start;
  }

  /** File offset just past the last byte given. */
  get position(): number {
    return this.stageStart + this.fill;
  }

  /**
   * Where the next bytes may be put directly (a socket read): the free part of the current
   * stage. A write() of a view that starts there takes the bytes without copying them; the
   * space is valid until the next write() or finish().
   */
  space(): Uint8Array {
    return this.stage.subarray(this.fill, STAGE);
  }

  /**
   * Takes a chunk (copied into the stage, unless it already lies there: see space()). Returns
   * a promise only when the caller must wait: every stage is still being written or read.
   */
  write(chunk: Uint8Array): Promise<void> | undefined {
    // Copying into shared memory is a relaxed (slow) copy: 0.35 s of CPU per GiB here.
    const inPlace =
      chunk.buffer === this.stage.buffer && chunk.byteOffset === this.stage.byteOffset + this.fill;
    for (let pos = 0; pos < chunk.length; ) {
      const n = Math.min(STAGE - this.fill, chunk.length - pos);
      if (!inPlace) this.stage.set(chunk.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === STAGE) {
        this.check();
        const next = this.freeStage();
        if (!next) return this.writeAfterWait(chunk.subarray(pos));
        this.flushBehind(next);
      }
    }
    return undefined;
  }

  /** The full stage waits for a free one; then the rest of the chunk goes in. */
  private async writeAfterWait(rest: Uint8Array): Promise<void> {
    this.flushBehind(await this.nextStage());
    await this.write(rest);
  }

  /**
   * Queues the full stage for writing and goes on filling `next`, so the stream is received
   * while earlier megabytes are written; a writer waits only when MAX_STAGES are busy (a slow
   * disk or hash slows the stream instead of growing memory, and one slow write does not
   * stall it).
   */
  private flushBehind(next: Buffer): void {
    const full = this.stage;
    this.stage = next;
    const from = this.stageStart;
    const fill = this.fill;
    // An incomplete last block moves to the new stage (it is written with what follows).
    const end = Math.floor((from + fill) / SPARSE_BLOCK) * SPARSE_BLOCK - from;
    full.copy(next, 0, end, fill);
    const reading = this.lend(full, this.lent, fill);
    this.lent = fill - end;
    this.fill = fill - end;
    this.stageStart = from + end;
    this.chain = this.chain
      .then(() => (this.failure === undefined ? this.writeStage(full, from, end) : undefined))
      .catch((err: unknown) => {
        this.failure ??= err;
      });
    void Promise.all([this.chain, reading]).finally(() => this.returnStage(full));
  }

  /** Gives stage[from, to) to the reader; its failure is the writer's. */
  private lend(stage: Buffer, from: number, to: number): Promise<void> | undefined {
    if (!this.reader || to <= from) return undefined;
    return this.reader(stage.subarray(from, to)).catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  private freeStage(): Buffer | undefined {
    const b = this.free.pop();
    if (b) return b;
    if (this.stages >= MAX_STAGES) return undefined;
    this.stages++;
    return newStage();
  }

  private async nextStage(): Promise<Buffer> {
    for (;;) {
      const b = this.freeStage();
      if (b) return b;
      await new Promise<void>((resolve) => {
        this.stageReturned = resolve;
      });
      this.check();
    }
  }

  private returnStage(stage: Buffer): void {
    this.free.push(stage);
    const wake = this.stageReturned;
    this.stageReturned = undefined;
    wake?.();
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for every queued stage; the first failure is this call's. */
  private async settle(): Promise<void> {
    await this.chain;
    this.check();
  }

  /** Writes everything staged and makes the file exactly `position` bytes long. */
  async finish(): Promise<void> {
    await this.settle();
    await this.flushAll();
    await this.extend();
    this.onFlushed?.(this.stageStart);
  }

  /** Writes all that is staged, an incomplete last block included (the end of the stream). */
  private async flushAll(): Promise<void> {
    const from = this.stageStart;
    const end = this.fill;
    void this.lend(this.stage, this.lent, end);
    this.lent = 0;
    this.fill = 0;
    this.stageStart = from + end;
    await this.writeStage(this.stage, from, end, true);
  }

  /** Writes the non-zero blocks of stage[0, end), which holds the file's bytes from `from`. */
  private async writeStage(stage: Buffer, from: number, end: number, last = false): Promise<void> {
    if (end <= 0) return;
    let run = -1;
    let pos = 0;
    while (pos < end) {
      // Blocks follow file offsets, so the first one may be short after a resume.
      const next = Math.min(
        end,
        (Math.floor((from + pos) / SPARSE_BLOCK) + 1) * SPARSE_BLOCK - from,
      );
      const zero = stage.compare(ZERO, 0, next - pos, pos, next) === 0;
      if (!zero && run < 0) run = pos;
      if (zero && run >= 0) {
        await this.put(stage, from, run, pos);
        run = -1;
      }
      pos = next;
    }
    if (run >= 0) await this.put(stage, from, run, end);
    // The end of the stream: finish() sets the final size, then tells readers.
    if (last) return;
    const upTo = from + end;
    // The size says how far the file is complete (a resume starts there), even when it
    // ends in skipped zeroes: extending writes no data, but it is a thread-pool round trip
    // that holds up the next stage's write, so it is done every EXTEND_EVERY of zeroes (a
    // killed download resumes at most that much, plus what was in flight, before its end;
    // once per stage, a 1 GiB download with 70% zeroes made 725 ftruncate calls).
    if (upTo - this.extended >= EXTEND_EVERY) await this.extend(upTo);
    // A reader is told only of bytes within the size: skipped zeroes past the file's end
    // would read as missing (a short read), not as zeroes.
    this.onFlushed?.(Math.min(upTo, this.extended));
  }

  private async extend(size: number = this.stageStart): Promise<void> {
    this.extended = size;
    try {
      await this.file.truncate(size);
    } catch (err) {
      throw ioError(err, `cannot write ${this.name}`);
    }
  }

  /**
   * Writes stage[from, to). With `blocking`, on this thread (LocalFile.writeNow): a piece is a
   * copy into the page cache, cheaper than a thread-pool round trip, and stages are written
   * one at a time, so each round trip held up the next (on a busy 2-core machine a 266 MB
   * download took 1.6-2.0 s that way, 1.1-1.7 s with blocking writes).
   */
  private async put(stage: Buffer, base: number, from: number, to: number): Promise<void> {
    const bytes = stage.subarray(from, to);
    try {
      if (this.blocking) this.file.writeNow(bytes, base + from);
      else await this.file.write(bytes, base + from);
    } catch (err) {
      throw ioError(err, `cannot write ${this.name}`);
    }
    this.written += to - from;
    this.extended = Math.max(this.extended, base + to);
    this.onWrite?.(to - from);
  }
}
