/**
 * A qcow2 writer: a write-only Image that builds a new qcow2 v3 file (16-bit refcounts) as
 * data arrives, in any order and with several writes in flight. Only written clusters are
 * allocated; zeroed clusters stay unallocated, or carry the zero flag over a backing file.
 * Whole-cluster writes go straight to the file (contiguous clusters in one write); partial
 * clusters are buffered until complete or until the image is flushed. With compression, each
 * cluster is compressed (deflate or zstd) and packed into shared host clusters.
 *
 * Memory: the L1 table (8 bytes per 512 MiB of virtual size at 64 KiB clusters), an L2 cache
 * (default 4 MiB), refcounts (2 bytes per host cluster) and pending partial clusters (at
 * most 8 MiB, or two clusters). `flush()` writes every table, the refcounts and the header; `close()` flushes.
 */
import { NotCapableError } from '../../../errors.js';
import { capabilities } from '../../../image/capabilities.js';
import type { Image } from '../../../image/types.js';
import { isZero } from '../../../io/bytes.js';
import type { LocalFile } from '../../../io/file.js';
import { FileWriter } from '../../file-writer.js';
import { compressCluster } from './compress.js';
import { type Compression, encodeHeader } from './header.js';
import { HostSpace } from './host-space.js';
import { L2Cache } from './l2-cache.js';
import {
  COMPRESSED,
  COPIED,
  compressedRange,
  entryOffset,
  type Layout,
  planLayout,
  readEntry,
  writeCompressedEntry,
  writeEntry,
  ZERO_FLAG,
} from './layout.js';
import { Mutex } from './mutex.js';
import { PartialCluster } from './partial.js';

export interface Qcow2WriterOptions {
  /** Virtual size in bytes (rounded up to 512, as qemu reads qcow2 sizes in sectors). */
  size: number;
  /** Default 64 KiB; a power of two from 512 bytes to 2 MiB. */
  clusterSize?: number;
  /** Compress every written cluster (clusters that do not shrink are stored plainly). */
  compress?: boolean;
  /** Compression type recorded in the header (default deflate, qemu's zlib). */
  compression?: Compression;
  /** Backing file reference stored in the image, as given (relative to the image). */
  backingFile?: string;
  backingFormat?: string;
  /** The backing image's content, to complete clusters that are only partly written. */
  backing?: Image;
  /** Bytes of L2 tables kept in memory (default 4 MiB; at least two tables). */
  l2CacheBytes?: number;
  /** fdatasync when flushed (default true). */
  sync?: boolean;
}

const CAPS = capabilities({ write: true, zero: true, flush: true });

/** Bytes of partly written clusters kept before the oldest is completed and written. */
const PARTIAL_BYTES = 8 * 1024 * 1024;
/** Clusters compressed at once per write call. */
const COMPRESS_PARALLEL = 8;

interface Piece {
  cluster: number;
  data: Buffer;
}

export class Qcow2Writer extends FileWriter<LocalFile> {
  readonly format = 'qcow2';
  override readonly capabilities = CAPS;
  readonly layout: Layout;
  private readonly space: HostSpace;
  private readonly l2: L2Cache;
  private readonly lock = new Mutex();
  private readonly partial = new Map<number, PartialCluster>();
  private readonly compression: Compression;

  private constructor(
    file: LocalFile,
    private readonly opts: Qcow2WriterOptions,
  ) {
    super(file, false); // finish() syncs (flush does too)
    this.layout = planLayout(opts.size, opts.clusterSize);
    this.compression = opts.compression ?? 'deflate';
    const cs = this.layout.clusterSize;
    this.space = new HostSpace(cs);
    this.space.allocCluster(); // the header
    const l1 = Buffer.alloc(this.layout.l1Clusters * cs);
    for (let i = 0; i < this.layout.l1Clusters; i++) this.space.allocCluster();
    const tables = Math.max(2, Math.floor((opts.l2CacheBytes ?? 4 * 1024 * 1024) / cs));
    this.l2 = new L2Cache(file, this.space, l1, tables);
  }

  /** Starts a qcow2 image in `file` (opened for writing; its old content is replaced). */
  static async create(file: LocalFile, opts: Qcow2WriterOptions): Promise<Qcow2Writer> {
    const w = new Qcow2Writer(file, opts);
    // Check the header fits now rather than after the data is written.
    w.header();
    await file.truncate(0);
    return w;
  }

  get size(): number {
    return this.layout.size;
  }

  private get hasBacking(): boolean {
    return this.opts.backingFile !== undefined;
  }

  /** Bytes of guest data cluster `c` holds (the last one may be short). */
  private clusterLength(c: number): number {
    const cs = this.layout.clusterSize;
    return Math.min(cs, this.layout.size - c * cs);
  }

  protected override async writeAt(buf: Uint8Array, offset: number): Promise<void> {
    const data = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
    const cs = this.layout.clusterSize;
    const whole: Piece[] = [];
    const parts: Promise<void>[] = [];
    for (let pos = 0; pos < data.length; ) {
      const c = Math.floor((offset + pos) / cs);
      const within = offset + pos - c * cs;
      const n = Math.min(this.clusterLength(c) - within, data.length - pos);
      const piece = data.subarray(pos, pos + n);
      if (within === 0 && n === this.clusterLength(c)) whole.push({ cluster: c, data: piece });
      else parts.push(this.writePartial(c, within, piece));
      pos += n;
    }
    await Promise.all([this.writeWhole(whole), ...parts]);
  }

  protected override async zeroAt(offset: number, length: number): Promise<void> {
    const cs = this.layout.clusterSize;
    const end = offset + length;
    const first = Math.ceil(offset / cs);
    let last = Math.floor(end / cs); // exclusive
    if (end === this.layout.size) last = Math.ceil(end / cs);
    if (first >= last) {
      await this.writeAt(Buffer.alloc(length), offset);
      return;
    }
    if (offset < first * cs) await this.writeAt(Buffer.alloc(first * cs - offset), offset);
    if (end > last * cs) await this.writeAt(Buffer.alloc(end - last * cs), last * cs);
    await this.zeroClusters(first, last);
  }

  protected override async flushAll(): Promise<void> {
    await this.finish();
  }

  /** Writes everything out; the file is a complete image afterwards. */
  private async finish(): Promise<void> {
    while (this.partial.size > 0) await this.commitOldestPartial();
    await this.lock.run(async () => {
      await this.l2.flush();
      const cs = this.layout.clusterSize;
      await this.file.write(this.l2.l1, cs);
      const rc = this.space.placeRefcounts();
      for (let i = 0; i < rc.blockOffsets.length; i++) {
        await this.file.write(this.space.encodeBlock(i), rc.blockOffsets[i]!);
      }
      const table = Buffer.alloc(rc.tableClusters * cs);
      rc.blockOffsets.forEach((off, i) => {
        table.writeBigUInt64BE(BigInt(off), i * 8);
      });
      await this.file.write(table, rc.tableOffset);
      await this.file.write(this.header(rc.tableOffset, rc.tableClusters), 0);
      await this.file.truncate(this.space.clusters * cs);
      if (this.opts.sync !== false) await this.file.sync();
    });
  }

  private header(refcountTableOffset = 0, refcountTableClusters = 0): Buffer {
    const l = this.layout;
    return encodeHeader(
      {
        clusterBits: l.clusterBits,
        size: l.size,
        l1Entries: l.l1Entries,
        l1Offset: l.clusterSize,
        refcountTableOffset,
        refcountTableClusters,
        compression: this.compression,
        backingFile: this.opts.backingFile,
        backingFormat: this.opts.backingFormat,
      },
      l.clusterSize,
    );
  }

  protected async complete(): Promise<void> {
    await this.finish();
  }

  /** Drops the references an L2 entry holds (its cluster is being replaced). */
  private releaseEntry(hi: number, lo: number): void {
    if (hi & COMPRESSED) {
      const r = compressedRange(hi, lo, this.layout.clusterBits);
      this.space.release(r.offset, r.end);
      return;
    }
    const at = entryOffset(hi, lo);
    if (at !== 0) this.space.release(at, at + this.layout.clusterSize);
  }

  /** Whole clusters: compressed or not, contiguous host clusters written in one call. */
  private async writeWhole(pieces: Piece[]): Promise<void> {
    if (pieces.length === 0) return;
    for (const p of pieces) this.partial.delete(p.cluster);
    const cs = this.layout.clusterSize;
    const blobs = this.opts.compress ? await this.compressAll(pieces) : undefined;
    const writes: { offset: number; data: Buffer }[] = [];
    await this.lock.run(async () => {
      for (let i = 0; i < pieces.length; i++) {
        const { cluster, data } = pieces[i]!;
        const l1i = Math.floor(cluster / this.layout.l2Entries);
        const l2i = cluster % this.layout.l2Entries;
        const table = (await this.l2.get(l1i, true))!;
        const { hi, lo } = readEntry(table, l2i);
        const blob = blobs?.[i];
        if (blob) {
          this.releaseEntry(hi, lo);
          const at = this.space.allocBytes(blob.length);
          writeCompressedEntry(table, l2i, this.layout.clusterBits, at, blob.length);
          writes.push({ offset: at, data: blob });
        } else {
          // A plain cluster is rewritten in place; anything else gets a new cluster.
          let at = hi & COMPRESSED || lo & ZERO_FLAG ? 0 : entryOffset(hi, lo);
          if (at === 0) {
            this.releaseEntry(hi, lo);
            at = this.space.allocCluster();
          }
          writeEntry(table, l2i, at, COPIED);
          writes.push({ offset: at, data: data.length === cs ? data : padTo(data, cs) });
        }
        this.l2.markDirty(l1i);
      }
    });
    await Promise.all(coalesce(writes).map((w) => this.file.write(w.data, w.offset)));
  }

  /** Compressed forms of the pieces; undefined where compression does not save a sector. */
  private async compressAll(pieces: Piece[]): Promise<(Buffer | undefined)[]> {
    const cs = this.layout.clusterSize;
    const out: (Buffer | undefined)[] = new Array(pieces.length);
    let next = 0;
    const worker = async () => {
      while (next < pieces.length) {
        const i = next++;
        const d = pieces[i]!.data;
        const c = await compressCluster(this.compression, d.length === cs ? d : padTo(d, cs));
        out[i] = c.length <= cs - 512 ? c : undefined;
      }
    };
    await Promise.all(Array.from({ length: Math.min(COMPRESS_PARALLEL, pieces.length) }, worker));
    return out;
  }

  private async writePartial(cluster: number, within: number, data: Buffer): Promise<void> {
    const state = await this.clusterState(cluster);
    if (state.host !== 0) {
      // An allocated plain cluster is simply updated in place.
      await this.file.write(data, state.host + within);
      return;
    }
    let p = this.partial.get(cluster);
    if (!p) {
      // Zeroes over a cluster that already reads as zero change nothing.
      if (state.readsZero && isZero(data)) return;
      p = new PartialCluster(this.layout.clusterSize);
      this.partial.set(cluster, p);
    }
    p.add(within, data);
    if (p.covered >= this.clusterLength(cluster)) {
      this.partial.delete(cluster);
      await this.writeWhole([{ cluster, data: p.data.subarray(0, this.clusterLength(cluster)) }]);
    } else if (this.partial.size > Math.max(2, PARTIAL_BYTES / this.layout.clusterSize)) {
      await this.commitOldestPartial();
    }
  }

  /** Where a cluster stands: its plain host cluster (or 0) and what it reads as otherwise. */
  private clusterState(
    cluster: number,
  ): Promise<{ host: number; compressed: boolean; readsZero: boolean }> {
    const l1i = Math.floor(cluster / this.layout.l2Entries);
    const l2i = cluster % this.layout.l2Entries;
    return this.lock.run(async () => {
      const table = await this.l2.get(l1i, false);
      const { hi, lo } = table ? readEntry(table, l2i) : { hi: 0, lo: 0 };
      const compressed = (hi & COMPRESSED) !== 0;
      const zero = (lo & ZERO_FLAG) !== 0;
      const host = compressed || zero ? 0 : entryOffset(hi, lo);
      const readsZero = zero || (!compressed && host === 0 && !this.hasBacking);
      return { host, compressed, readsZero };
    });
  }

  /** Completes the oldest partly written cluster from what it read before, and writes it. */
  private async commitOldestPartial(): Promise<void> {
    const first = this.partial.entries().next().value;
    if (!first) return;
    const [cluster, p] = first;
    this.partial.delete(cluster);
    const cs = this.layout.clusterSize;
    const state = await this.clusterState(cluster);
    if (state.host !== 0) {
      // Allocated meanwhile: only the bytes written go in place.
      for (const [from, to] of p.ranges()) {
        await this.file.write(p.data.subarray(from, to), state.host + from);
      }
      return;
    }
    if (state.compressed) {
      throw new NotCapableError(
        `${this.label}: cannot partly rewrite compressed cluster at ${cluster * cs}`,
      );
    }
    const backing = this.opts.backing;
    if (!state.readsZero && backing) {
      for (const [from, to] of p.gaps(this.clusterLength(cluster))) {
        const end = Math.min(cluster * cs + to, backing.size);
        if (end > cluster * cs + from) {
          await backing.read(p.data.subarray(from, end - cluster * cs), cluster * cs + from);
        }
      }
    }
    await this.writeWhole([{ cluster, data: p.data.subarray(0, this.clusterLength(cluster)) }]);
  }

  /** Clusters [first, last) read as zero: unallocated, or zero-flagged over a backing file. */
  private async zeroClusters(first: number, last: number): Promise<void> {
    for (let c = first; c < last; c++) this.partial.delete(c);
    const per = this.layout.l2Entries;
    await this.lock.run(async () => {
      for (let c = first; c < last; ) {
        const l1i = Math.floor(c / per);
        const stop = Math.min(last, (l1i + 1) * per);
        const table = await this.l2.get(l1i, this.hasBacking);
        if (table) {
          for (; c < stop; c++) {
            const l2i = c % per;
            const { hi, lo } = readEntry(table, l2i);
            this.releaseEntry(hi, lo);
            table.writeUInt32BE(0, l2i * 8);
            table.writeUInt32BE(this.hasBacking ? ZERO_FLAG : 0, l2i * 8 + 4);
          }
          this.l2.markDirty(l1i);
        }
        c = stop;
      }
    });
  }
}

function padTo(data: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  data.copy(out);
  return out;
}

/**
 * Merges writes whose host ranges follow each other into single writes; data that also
 * follows in memory (consecutive clusters of one caller buffer) is merged without copying.
 */
function coalesce(writes: { offset: number; data: Buffer }[]): { offset: number; data: Buffer }[] {
  const sorted = [...writes].sort((a, b) => a.offset - b.offset);
  const out: { offset: number; parts: Buffer[]; end: number }[] = [];
  for (const w of sorted) {
    const last = out.at(-1);
    if (last && last.end === w.offset) {
      last.parts.push(w.data);
      last.end += w.data.length;
    } else {
      out.push({ offset: w.offset, parts: [w.data], end: w.offset + w.data.length });
    }
  }
  return out.map((o) => ({ offset: o.offset, data: join(o.parts) }));
}

function join(parts: Buffer[]): Buffer {
  const first = parts[0]!;
  let adjacent = true;
  for (let i = 1; i < parts.length && adjacent; i++) {
    const prev = parts[i - 1]!;
    const p = parts[i]!;
    adjacent = p.buffer === first.buffer && p.byteOffset === prev.byteOffset + prev.length;
  }
  if (!adjacent) return Buffer.concat(parts);
  const length = parts.reduce((n, p) => n + p.length, 0);
  return Buffer.from(first.buffer, first.byteOffset, length);
}

export function isQcow2Writer(image: Image): image is Qcow2Writer {
  return image instanceof Qcow2Writer;
}
