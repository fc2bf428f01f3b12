/**
 * What every image writer shares: it writes one file (or a forward-only sink), cannot read
 * back, and ends one of two ways. close() completes the image (the format's tables and
 * headers, then an fsync when asked); discard() only closes the file, for a caller that
 * removes it after a failed copy. Whichever comes first runs once; later calls do nothing.
 */
import { NotCapableError } from '../errors.js';
import { BaseImage } from '../image/base.js';

/** The part of a file a writer needs at its end (LocalFile, or a stream sink). */
export interface WriterFile {
  readonly path: string;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export abstract class FileWriter<F extends WriterFile> extends BaseImage {
  private closed = false;

  protected constructor(
    protected readonly file: F,
    /** fsync the file once the image is complete. */
    protected readonly sync: boolean,
  ) {
    super();
  }

  override get label(): string {
    return this.file.path;
  }

  protected async readAt(): Promise<void> {
    throw new NotCapableError(`${this.label}: the ${this.format} writer cannot read; reopen it`);
  }

  /** Writes what makes the file a complete image (tables, headers, footer). */
  protected abstract complete(): Promise<void>;

  /** Lets work in flight settle before a discarded file is closed. */
  protected async abandon(): Promise<void> {}

  /** Completes the image and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.complete();
      if (this.sync) await this.file.sync();
    } finally {
      await this.file.close();
    }
  }

  /** Closes the file without completing it (the caller removes it). */
  async discard(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.abandon();
    } finally {
      await this.file.close();
    }
  }
}
