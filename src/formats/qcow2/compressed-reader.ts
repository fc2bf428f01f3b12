/**
 * Reads compressed clusters for one layer. qemu stores consecutive compressed clusters back to
 * back, so neighbours are fetched with one host read (into shared memory) and handed to the
 * decompression engine as one batch: whole clusters decode straight into the caller's buffer.
 * Clusters a read only cuts through decode into a small cache, for sequential small reads.
 */
import {
  type BatchFailure,
  type BatchItem,
  decodeBatch,
  decodesInline,
  Flavour,
  readAndDecode,
  zstdFindsFrameEnds,
} from '../../codec/engine.js';
import { acquireShared, allSettledOrThrow, releaseShared } from '../../codec/shared-buffers.js';
import { CorruptImageError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { LocalFile } from '../../io/file.js';
import { zstdFrameLength } from './compressed.js';
import type { Qcow2Header } from './header.js';
import { capacityFor } from './l2-cache.js';
import type { Run } from './mapping.js';

/** Memory for recently decompressed clusters. */
const CACHE_BYTES = 8 * 1024 * 1024;
/** Bounds of one grouped host read (a single cluster may exceed the byte bound). */
const GROUP_BYTES = 1024 * 1024;
const GROUP_MEMBERS = 64;

export class CompressedReader {
  /** Recently decoded clusters by host offset, oldest first (an LRU). */
  private readonly cache = new Map<number, Uint8Array>();
  private readonly cacheCapacity: number;
  private readonly flavour: Flavour;

  constructor(
    private readonly source: ByteSource,
    private readonly header: Qcow2Header,
    private readonly who: string,
  ) {
    const cs = header.clusterSize;
    this.flavour = header.compressionType === 'zlib' ? Flavour.Deflate : Flavour.Zstd;
    this.cacheCapacity = Math.min(256, capacityFor(CACHE_BYTES, cs));
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
    const cs = this.header.clusterSize;
    const whole: Run[] = [];
    const partial: Run[] = [];
    for (const r of group) {
      if (r.offset % cs === 0 && r.length === cs) whole.push(r);
      else if (!this.fromCache(r, buf, base)) partial.push(r);
    }
    const todo = whole.concat(partial);
    if (todo.length === 0) return;
    const first = group[0]!.host;
    const end = Math.min(this.source.size, Math.max(...todo.map((r) => r.host + r.compressedSize)));
    const span = acquireShared(end - first);
    if (this.readsOnWorker(whole, partial)) {
      try {
        await this.readAndDecode(whole, span, first, buf, base);
      } finally {
        releaseShared(span);
      }
      return;
    }
    const clusters = partial.map(() => new Uint8Array(cs));
    try {
      const n = await this.source.read(span, first);
      if (n !== span.length) this.ended(first + n);
      // Whole clusters land in `buf`; partial ones in their own cluster buffers.
      const direct = whole.map((r) => this.item(r, span, first, r.offset - base));
      const cached = partial.map((r, i) => ({ r, item: this.item(r, span, first, 0), i }));
      const jobs = [this.decode(whole, direct, span, buf)];
      for (const c of cached) jobs.push(this.decode([c.r], [c.item], span, clusters[c.i]!));
      // Every decode settles before the span goes back to the pool.
      await allSettledOrThrow(jobs);
    } finally {
      releaseShared(span);
    }
    partial.forEach((r, i) => {
      const cluster = clusters[i]!;
      this.remember(r.host, cluster);
      const from = r.offset % cs;
      buf.set(cluster.subarray(from, from + r.length), r.offset - base);
    });
  }

  /**
   * A local file's clusters, all whole and more than one inline decode's worth: the decode
   * worker reads the span itself, so this thread copies nothing (its preadv2 of the
   * compressed bytes was the largest main-thread cost). zstd qualifies only when libzstd
   * finds each frame's end (qemu pads frames to sectors); for the npm binding the frame
   * lengths are found in the span first, so it is read here.
   */
  private readsOnWorker(whole: Run[], partial: Run[]): boolean {
    return (
      this.source instanceof LocalFile &&
      (this.flavour !== Flavour.Zstd || zstdFindsFrameEnds()) &&
      partial.length === 0 &&
      !decodesInline(whole.length * this.header.clusterSize)
    );
  }

  private async readAndDecode(
    whole: Run[],
    span: Uint8Array,
    first: number,
    buf: Uint8Array,
    base: number,
  ): Promise<void> {
    // The span is not read yet: zstd items keep their padding (libzstd finds the frame end).
    const items = whole.map((r) => this.item(r, undefined, first, r.offset - base));
    const file = this.source as LocalFile;
    const r = await readAndDecode(file, first, span, items, buf);
    if (r.bytesRead !== span.length) this.ended(first + r.bytesRead);
    if (r.failure) this.failed(whole, r.failure);
  }

  private ended(at: number): never {
    throw new CorruptImageError(`${this.who}: file ended at ${at} reading compressed data`);
  }

  clear(): void {
    this.cache.clear();
  }

  private remember(host: number, cluster: Uint8Array): void {
    this.cache.delete(host);
    this.cache.set(host, cluster);
    if (this.cache.size > this.cacheCapacity) {
      this.cache.delete(this.cache.keys().next().value as number);
    }
  }

  private fromCache(r: Run, buf: Uint8Array, base: number): boolean {
    const cluster = this.cache.get(r.host);
    if (!cluster) return false;
    this.remember(r.host, cluster);
    const from = r.offset % this.header.clusterSize;
    buf.set(cluster.subarray(from, from + r.length), r.offset - base);
    return true;
  }

  private where(r: Run): string {
    const guest = r.offset - (r.offset % this.header.clusterSize);
    return `${this.who}: compressed cluster for guest offset ${guest}`;
  }

  /**
   * The batch item for run `r`, checked against the end of the file. A zstd item is cut to
   * its frame's exact length when the span is given (already read).
   */
  private item(r: Run, span: Uint8Array | undefined, spanStart: number, to: number): BatchItem {
    const cs = this.header.clusterSize;
    const avail = Math.min(r.compressedSize, this.source.size - r.host);
    // qemu counts whole sectors; only the last one may run past the end of the file.
    if (r.compressedSize - avail >= 512) {
      throw new CorruptImageError(
        `${this.where(r)} (${r.compressedSize} bytes at ${r.host}) runs past the end of the file`,
      );
    }
    const at = r.host - spanStart;
    let size = avail;
    if (this.flavour === Flavour.Zstd && span) {
      size = zstdFrameLength(span.subarray(at, at + avail), cs, this.where(r));
    }
    return { at, size, to, length: cs, flavour: this.flavour };
  }

  private async decode(runs: Run[], items: BatchItem[], span: Uint8Array, dst: Uint8Array) {
    if (items.length === 0) return;
    const failure = await decodeBatch(span, items, dst);
    if (failure) this.failed(runs, failure);
  }

  private failed(runs: Run[], failure: BatchFailure): never {
    const where = this.where(runs[failure.index]!);
    if (failure.written !== undefined) {
      throw new CorruptImageError(
        `${where}: compressed cluster decompresses to ${failure.written} bytes, not ${this.header.clusterSize}`,
      );
    }
    const codec = this.flavour === Flavour.Zstd ? 'zstd' : 'deflate';
    throw new CorruptImageError(`${where}: bad ${codec} data (${failure.message})`);
  }
}
