import type { Writable } from 'node:stream';
import { NotCapableError, OutOfRangeError } from '../../errors.js';
import { capabilities } from '../../image/capabilities.js';
import type { Extent, Image } from '../../image/types.js';
import { writeChunk } from '../../io/stream-write.js';
import { zeroBlock } from './blocks.js';

const CAPS = capabilities({ write: true, zero: true, flush: true });

/**
 * A raw image written front to back into a stream (stdout): writes must arrive in offset
 * order with no gaps (the copy engine's `ordered` mode), and zero ranges are written out as
 * zero bytes. The caller's buffer is free again when `write` resolves.
 */
export class StreamTarget implements Image {
  readonly format = 'raw';
  readonly capabilities = CAPS;
  private position = 0;

  constructor(
    private readonly stream: Writable,
    readonly size: number,
    readonly label = 'stdout',
  ) {}

  /** Bytes written so far. */
  get written(): number {
    return this.position;
  }

  async read(): Promise<void> {
    throw new NotCapableError(`${this.label}: a stream cannot be read back`);
  }

  async *extents(offset = 0, length = this.size - offset): AsyncIterable<Extent> {
    yield { offset, length, zero: false, hole: false };
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.expect(offset, buf.length);
    await this.push(buf);
  }

  async zero(offset: number, length: number): Promise<void> {
    this.expect(offset, length);
    const z = zeroBlock(Math.min(length, 1 << 20));
    for (let done = 0; done < length; ) {
      const n = Math.min(z.length, length - done);
      await this.push(z.subarray(0, n));
      done += n;
    }
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  private expect(offset: number, length: number): void {
    if (offset !== this.position) {
      throw new NotCapableError(
        `${this.label}: stream writes must be sequential (expected offset ${this.position}, got ${offset})`,
      );
    }
    if (offset + length > this.size) {
      throw new OutOfRangeError(`${this.label}: write past the end at ${offset}`);
    }
  }

  private push(chunk: Uint8Array): Promise<void> {
    this.position += chunk.length;
    return writeChunk(this.stream, chunk, this.label);
  }
}
