import { BaseImage } from '../../src/image/base.js';

/** A raw image over a Buffer (tests that corrupt bytes in memory). */
export class MemImage extends BaseImage {
  readonly format = 'raw';
  constructor(readonly bytes: Buffer) {
    super();
  }
  get size(): number {
    return this.bytes.length;
  }
  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    buf.set(this.bytes.subarray(offset, offset + buf.length));
  }
  async close(): Promise<void> {}
}
