import type { ByteSource } from '../../image/types.js';
import { SingleFlightLru } from '../../io/single-flight-lru.js';
import { readExact } from './bytes.js';

/**
 * Reads table entries (block allocation tables, L1/L2 tables) through a bounded cache of
 * fixed-size pages, so a huge table costs memory only for the parts in use. The caller checks
 * once that the whole table lies inside the file.
 */
export class TableReader {
  private readonly pages: SingleFlightLru<number, Uint8Array>;

  constructor(
    private readonly source: ByteSource,
    private readonly what: string,
    private readonly pageSize = 64 * 1024,
    maxPages = 128,
  ) {
    this.pages = new SingleFlightLru(maxPages);
  }

  /** The `length` bytes at file offset `offset` (an entry; never straddles in aligned tables). */
  async bytes(offset: number, length: number): Promise<Uint8Array> {
    const start = offset - (offset % this.pageSize);
    if (offset + length > start + this.pageSize) {
      return readExact(this.source, offset, length, this.what);
    }
    const page = await this.pages.get(start, () =>
      readExact(
        this.source,
        start,
        Math.min(this.pageSize, this.source.size - start),
        `${this.what} page`,
      ),
    );
    if (offset - start + length > page.length) {
      return readExact(this.source, offset, length, this.what);
    }
    return page.subarray(offset - start, offset - start + length);
  }

  async u64le(offset: number): Promise<{ lo: number; hi: number }> {
    const b = await this.bytes(offset, 8);
    const dv = new DataView(b.buffer, b.byteOffset, 8);
    return { lo: dv.getUint32(0, true), hi: dv.getUint32(4, true) };
  }
}
