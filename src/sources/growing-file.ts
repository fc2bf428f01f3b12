/**
 * A file that is still being downloaded, read as a byte source: a read waits until the
 * download has written past the range it asks for, so a converter can follow the download
 * instead of waiting for its end. Reads fail cleanly when the download fails, is aborted, or
 * starts over (then what was read before may no longer be the file's content).
 */
import { type FileHandle, open } from 'node:fs/promises';
import { AbortError, ioError } from '../errors.js';
import type { ByteSource } from '../image/types.js';

interface Waiter {
  end: number;
  resolve(): void;
  reject(err: Error): void;
}

/** Thrown to readers when the download went away (failed, not modified, restarted). */
export class DownloadGoneError extends AbortError {
  constructor(
    message: string,
    readonly restarted = false,
  ) {
    super(message);
  }
}

export class GrowingFile implements ByteSource {
  private total: number | undefined;
  private available = 0;
  private failure: Error | undefined;
  private waiters: Waiter[] = [];
  private handle: FileHandle | undefined;
  /** A read failed because the download went away (its error may reach the caller wrapped). */
  cutOff = false;

  constructor(
    readonly path: string,
    readonly name: string,
  ) {}

  /** The final size (known once the server said it); 0 before that. */
  get size(): number {
    return this.total ?? 0;
  }

  get sizeKnown(): boolean {
    return this.total !== undefined;
  }

  /** A download attempt starts writing at `start`, towards `total` bytes (if known). */
  attempt(start: number, total: number | undefined): void {
    if (start < this.available || (this.total !== undefined && total !== this.total)) {
      this.fail(new DownloadGoneError(`${this.name}: the download started over`, true));
      return;
    }
    this.total ??= total;
    this.wake();
  }

  /** Bytes [0, position) are in the file. */
  advance(position: number): void {
    if (position > this.available) this.available = position;
    this.wake();
  }

  /** The download is over (complete or not needed): nothing more will arrive. */
  end(): void {
    this.fail(new DownloadGoneError(`${this.name}: the download ended early`));
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  /** Waits until bytes [0, end) are in the file (end is clamped to the final size). */
  async waitFor(end: number): Promise<void> {
    const target = this.total !== undefined ? Math.min(end, this.total) : end;
    if (target <= this.available) return;
    try {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve, reject) =>
        this.waiters.push({ end: target, resolve, reject }),
      );
    } catch (err) {
      if (err instanceof DownloadGoneError) this.cutOff = true;
      throw err;
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    const end = Math.min(offset + buf.length, this.size);
    if (end <= offset) return 0;
    await this.waitFor(end);
    try {
      this.handle ??= await open(this.path, 'r');
      let done = 0;
      while (offset + done < end) {
        const { bytesRead } = await this.handle.read(buf, done, end - offset - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      // The download skips zero blocks and moves the file's size past them only now and
      // then: bytes it has passed but the file does not hold yet are such zeroes.
      const passed = Math.min(end, this.available);
      if (offset + done < passed) {
        buf.fill(0, done, passed - offset);
        done = passed - offset;
      }
      return done;
    } catch (err) {
      throw ioError(err, `cannot read ${this.path}`);
    }
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  private wake(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      const end = this.total !== undefined ? Math.min(w.end, this.total) : w.end;
      if (end <= this.available) w.resolve();
      else if (this.failure) w.reject(this.failure);
      else still.push(w);
    }
    this.waiters = still;
  }
}
