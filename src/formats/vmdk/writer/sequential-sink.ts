/**
 * Where the streamOptimized writer puts its bytes: a local file, or a stream (stdout) that
 * only moves forward. The stream sink turns positioned writes into appends: a gap before the
 * next write (the unused sectors before the first grain) is sent as zeroes, and a write
 * behind the current position is an error, never a silent corruption.
 */
import type { Writable } from 'node:stream';
import { NotCapableError } from '../../../errors.js';
import { writeChunk } from '../../../io/stream-write.js';

export interface SequentialSink {
  readonly path: string;
  write(buf: Uint8Array, offset: number): Promise<void>;
  truncate(size: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export class StreamSink implements SequentialSink {
  private position = 0;

  constructor(
    private readonly stream: Writable,
    readonly path = 'stdout',
  ) {}

  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (offset < this.position) {
      throw new NotCapableError(
        `${this.path}: a stream cannot seek back (at ${this.position}, asked for ${offset})`,
      );
    }
    if (offset > this.position) await this.push(Buffer.alloc(offset - this.position));
    await this.push(buf);
  }

  /** Only the initial truncate(0) makes sense on a stream. */
  async truncate(size: number): Promise<void> {
    if (size !== this.position) {
      throw new NotCapableError(`${this.path}: a stream cannot be resized`);
    }
  }

  async sync(): Promise<void> {}

  async close(): Promise<void> {}

  private push(chunk: Uint8Array): Promise<void> {
    this.position += chunk.length;
    return writeChunk(this.stream, chunk, this.path);
  }
}
