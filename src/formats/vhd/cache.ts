import type { ByteSource } from '../../image/types.js';
import { readExact } from './bytes.js';

/**
 * A small least-recently-used cache of loads in flight or done. Concurrent gets of one key share
 * one load; a failed load is forgotten so it can be retried.
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, Promise<V>>();

  constructor(private readonly maxEntries: number) {}

  get(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const p = load();
    this.entries.set(key, p);
    p.catch(() => {
      if (this.entries.get(key) === p) this.entries.delete(key);
    });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    return p;
  }
}

/**
 * Reads table entries (block allocation tables, L1/L2 tables) through a bounded cache of
 * fixed-size pages, so a huge table costs memory only for the parts in use. The caller checks
 * once that the whole table lies inside the file.
 */
export class TableReader {
  private readonly pages: LruCache<number, Uint8Array>;

  constructor(
    private readonly source: ByteSource,
    private readonly what: string,
    private readonly pageSize = 64 * 1024,
    maxPages = 128,
  ) {
    this.pages = new LruCache(maxPages);
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
