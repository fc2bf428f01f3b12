/**
 * Writes a byte stream to a file at increasing offsets, skipping every 4 KiB block (aligned to
 * the file, as qemu-img -S 4k) that is all zeroes: those stay holes. Bytes are staged until a
 * block is complete. `finish` writes the tail and sets the file size to the stream's end, so a
 * file that ends in zeroes still has its full length.
 */
import type { FileHandle } from 'node:fs/promises';
import { ioError } from '../errors.js';

export const SPARSE_BLOCK = 4096;
const STAGE = 1024 * 1024;
const ZERO = Buffer.alloc(SPARSE_BLOCK);
const EXTEND_EVERY = STAGE;

export class SparseWriter {
  private readonly stage = Buffer.allocUnsafe(STAGE + SPARSE_BLOCK);
  private fill = 0;
  /** File offset of stage[0]. */
  private stageStart: number;
  /** The file size last set by extend(). */
  private extended = 0;
  /** Bytes written to the file (zero blocks not counted: they were never written). */
  written = 0;
  /** Told each time the file holds every byte before `position` (readers may follow). */
  onFlushed: ((position: number) => void) | undefined;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    private readonly name: string,
  ) {
    this.stageStart = start;
  }

  /** File offset just past the last byte given. */
  get position(): number {
    return this.stageStart + this.fill;
  }

  async write(chunk: Uint8Array): Promise<void> {
    for (let pos = 0; pos < chunk.length; ) {
      const n = Math.min(STAGE - this.fill, chunk.length - pos);
      this.stage.set(chunk.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === STAGE) await this.flush(false);
    }
  }

  /** Writes everything staged and makes the file exactly `position` bytes long. */
  async finish(): Promise<void> {
    await this.flush(true);
    await this.extend();
    this.onFlushed?.(this.stageStart);
  }

  /** Writes the non-zero blocks of the stage; keeps an incomplete last block unless `all`. */
  private async flush(all: boolean): Promise<void> {
    const end = all
      ? this.fill
      : Math.floor((this.stageStart + this.fill) / SPARSE_BLOCK) * SPARSE_BLOCK - this.stageStart;
    if (end <= 0) return;
    let run = -1;
    let pos = 0;
    while (pos < end) {
      // Blocks follow file offsets, so the first one may be short after a resume.
      const next = Math.min(
        end,
        (Math.floor((this.stageStart + pos) / SPARSE_BLOCK) + 1) * SPARSE_BLOCK - this.stageStart,
      );
      const zero = this.stage.compare(ZERO, 0, next - pos, pos, next) === 0;
      if (!zero && run < 0) run = pos;
      if (zero && run >= 0) {
        await this.put(run, pos);
        run = -1;
      }
      pos = next;
    }
    if (run >= 0) await this.put(run, end);
    this.stage.copy(this.stage, 0, end, this.fill);
    this.fill -= end;
    this.stageStart += end;
    // The size says how far the file is complete (a resume starts there), even when it
    // ends in skipped zeroes: extending writes no data and costs one call per stage, so a
    // killed download resumes at most one stage (plus what was in flight) before its end.
    if (!all && run < 0 && this.stageStart - this.extended >= EXTEND_EVERY) await this.extend();
    this.onFlushed?.(this.stageStart);
  }

  private async extend(): Promise<void> {
    this.extended = this.stageStart;
    try {
      await this.handle.truncate(this.stageStart);
    } catch (err) {
      throw ioError(err, `cannot write ${this.name}`);
    }
  }

  private async put(from: number, to: number): Promise<void> {
    try {
      for (let done = from; done < to; ) {
        const { bytesWritten } = await this.handle.write(
          this.stage,
          done,
          to - done,
          this.stageStart + done,
        );
        done += bytesWritten;
        this.written += bytesWritten;
      }
      this.extended = Math.max(this.extended, this.stageStart + to);
    } catch (err) {
      throw ioError(err, `cannot write ${this.name}`);
    }
  }
}
