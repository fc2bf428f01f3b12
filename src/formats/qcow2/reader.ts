/** Small read helpers over a ByteSource for metadata (tables, snapshot and bitmap directories). */
import { CorruptImageError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { readExact } from '../../io/read-exact.js';

export { readExact };

/**
 * Sequential reads of a variable-length directory through a bounded window, so a table of
 * many small entries costs a few large reads. Reads never go past `limit` bytes from `start`.
 */
export class Cursor {
  private window: Uint8Array = new Uint8Array(0);
  private windowAt = 0;
  pos: number;

  constructor(
    private readonly source: ByteSource,
    private readonly start: number,
    private readonly limit: number,
    private readonly what: string,
  ) {
    this.pos = start;
  }

  async take(length: number): Promise<Uint8Array> {
    if (this.pos + length > this.start + this.limit) {
      throw new CorruptImageError(
        `${this.source.name}: ${this.what} is larger than its limit of ${this.limit} bytes`,
      );
    }
    const inWindow = this.pos - this.windowAt;
    if (inWindow < 0 || inWindow + length > this.window.length) {
      const want = Math.max(length, Math.min(64 * 1024, this.start + this.limit - this.pos));
      const size = Math.min(want, Math.max(length, this.source.size - this.pos));
      this.window = await readExact(this.source, this.pos, size, this.what);
      this.windowAt = this.pos;
    }
    const at = this.pos - this.windowAt;
    this.pos += length;
    return this.window.subarray(at, at + length);
  }

  skip(length: number): void {
    this.pos += length;
  }
}
