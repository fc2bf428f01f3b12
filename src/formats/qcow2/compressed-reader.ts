/**
 * Reads compressed clusters for one layer. qemu stores consecutive compressed clusters back to
 * back, so neighbours are fetched with one host read and then decompressed in parallel (on the
 * libuv pool); recently decompressed clusters are kept in a small cache for sequential small
 * reads.
 */
import { CorruptImageError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { decompressCluster } from './compressed.js';
import type { Qcow2Header } from './header.js';
import { capacityFor, TableCache } from './l2-cache.js';
import type { Run } from './mapping.js';

/** Memory for recently decompressed clusters. */
const CACHE_BYTES = 8 * 1024 * 1024;
/** Bounds of one grouped host read (a single cluster may exceed the byte bound). */
const GROUP_BYTES = 1024 * 1024;
const GROUP_MEMBERS = 64;

export class CompressedReader {
  private readonly cache: TableCache<Uint8Array>;

  constructor(
    private readonly source: ByteSource,
    private readonly header: Qcow2Header,
    private readonly who: string,
  ) {
    const cs = header.clusterSize;
    this.cache = new TableCache(Math.min(256, capacityFor(CACHE_BYTES, cs)), () =>
      Promise.reject(new Error('compressed clusters load through read()')),
    );
  }

  /** Whether `next` can join `group` (close on the host, within the group bounds). */
  fits(group: Run[], next: Run): boolean {
    const first = group[0];
    const last = group.at(-1);
    if (!first || !last) return true;
    if (group.length >= GROUP_MEMBERS || next.host < last.host) return false;
    // Sector-rounded sizes overlap the next cluster's start; allow that and tiny gaps.
    if (next.host > last.host + last.compressedSize + 512) return false;
    return next.host + next.compressedSize - first.host <= GROUP_BYTES;
  }

  /** Fills each run's bytes into `buf` (whose first byte is guest offset `base`). */
  async read(group: Run[], buf: Uint8Array, base: number): Promise<void> {
    const first = group[0]!.host;
    const end = Math.min(
      this.source.size,
      Math.max(...group.map((r) => r.host + r.compressedSize)),
    );
    let span: Promise<Uint8Array> | undefined;
    const bytes = () => {
      span ??= this.readSpan(first, end);
      return span;
    };
    const cs = this.header.clusterSize;
    await Promise.all(
      group.map(async (r) => {
        const clusterStart = r.offset - (r.offset % cs);
        const cluster = await this.cache.get(r.host, async () =>
          this.decompress(r, clusterStart, await bytes(), first),
        );
        const from = r.offset - clusterStart;
        buf.set(cluster.subarray(from, from + r.length), r.offset - base);
      }),
    );
  }

  clear(): void {
    this.cache.clear();
  }

  private async readSpan(start: number, end: number): Promise<Uint8Array> {
    const span = new Uint8Array(end - start);
    const n = await this.source.read(span, start);
    if (n !== span.length) {
      throw new CorruptImageError(
        `${this.who}: file ended at ${start + n} reading compressed data`,
      );
    }
    return span;
  }

  private decompress(r: Run, guest: number, span: Uint8Array, spanStart: number) {
    const where = `${this.who}: compressed cluster for guest offset ${guest}`;
    const avail = Math.min(r.compressedSize, this.source.size - r.host);
    // qemu counts whole sectors; only the last one may run past the end of the file.
    if (r.compressedSize - avail >= 512) {
      throw new CorruptImageError(
        `${where} (${r.compressedSize} bytes at ${r.host}) runs past the end of the file`,
      );
    }
    const at = r.host - spanStart;
    const data = span.subarray(at, at + avail);
    return decompressCluster(this.header.compressionType, data, this.header.clusterSize, where);
  }
}
