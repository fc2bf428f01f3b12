/**
 * A qcow2 image written in place: reads, extents and map come from the reader (it shares the
 * writer's tables); writes allocate data clusters and L2 tables at the end of the file.
 * - A write into an allocated cluster goes to its host cluster; anything else (unallocated,
 *   compressed, zero flag without storage) gets a fresh cluster holding the cluster's current
 *   guest content with the write applied, so a compressed cluster is decompressed once.
 * - Zeroing whole clusters sets the v3 zero flag (keeping preallocated storage, punched when
 *   the caller allows); partial clusters and v2 images get written zeroes.
 * - Trim of whole clusters: v3 zero flag, v2 deallocation; partial clusters are left as they
 *   are (as qemu does).
 * Data is written before the metadata that references it is even changed in memory, so a
 * concurrent read sees either the old or the new cluster, never an unwritten one.
 */
import { BaseImage } from '../../../image/base.js';
import { capabilities } from '../../../image/capabilities.js';
import type {
  ByteSource,
  Extent,
  FormatDetails,
  Image,
  MapEntry,
  ZeroOptions,
} from '../../../image/types.js';
import type { LocalFile } from '../../../io/file.js';
import type { Qcow2Header } from '../header.js';
import type { Qcow2Image } from '../image.js';
import {
  COMPRESSED,
  COPIED,
  compressedRange,
  entryOffset,
  writeEntry,
  ZERO_FLAG,
} from '../writer/layout.js';
import { Mutex } from '../writer/mutex.js';
import type { Qcow2Tables } from './tables.js';

/** Dirty tables kept in memory before an internal flush (bounds memory and lost work). */
const MAX_DIRTY_TABLES = 256;

export class WritableQcow2Image extends BaseImage {
  readonly format = 'qcow2';
  override readonly capabilities = capabilities({
    write: true,
    zero: true,
    trim: true,
    flush: true,
    extents: true,
  });
  readonly size: number;
  override readonly backing: Image | undefined;
  private readonly cs: number;
  private readonly l2Entries: number;
  private readonly mutex = new Mutex();
  private readonly header: Qcow2Header;
  private closed = false;

  constructor(
    private readonly inner: Qcow2Image,
    private readonly tables: Qcow2Tables,
  ) {
    super();
    this.header = inner.header;
    this.size = inner.size;
    this.backing = inner.backing;
    this.cs = this.header.clusterSize;
    this.l2Entries = this.cs / 8;
  }

  override get label(): string {
    return this.inner.label;
  }

  get source(): ByteSource {
    return this.inner.source;
  }

  private get file(): LocalFile {
    return this.tables.file;
  }

  protected readAt(buf: Uint8Array, offset: number): Promise<void> {
    return this.inner.read(buf, offset);
  }

  protected override extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    return this.inner.extents(offset, length);
  }

  mapping(offset: number, length: number): AsyncIterable<MapEntry> {
    return this.inner.mapping(offset, length);
  }

  describe(): FormatDetails {
    return this.inner.describe();
  }

  protected override writeAt(buf: Uint8Array, offset: number): Promise<void> {
    return this.locked(async () => {
      // Whole clusters that need fresh storage are gathered and written with one pwrite.
      let fresh: { slot: Slot; hi: number; lo: number }[] = [];
      let freshAt = 0;
      const writeFresh = async () => {
        if (fresh.length === 0) return;
        const host = await this.tables.refcounts.allocate(fresh.length);
        await this.writeNew(buf.subarray(freshAt, freshAt + fresh.length * this.cs), host);
        fresh.forEach(({ slot, hi, lo }, i) => {
          this.release(hi, lo);
          writeEntry(slot.t, slot.at / 8, host + i * this.cs, COPIED);
          this.tables.markL2(slot.l2);
        });
        fresh = [];
      };
      for (let pos = offset; pos < offset + buf.length; ) {
        const n = Math.min(this.cs - (pos % this.cs), offset + buf.length - pos);
        if (n === this.cs) {
          const slot = (await this.slot(pos, true))!;
          const hi = slot.t.readUInt32BE(slot.at);
          const lo = slot.t.readUInt32BE(slot.at + 4);
          if (!this.ownsHost(hi, lo)) {
            if (fresh.length === 0) freshAt = pos - offset;
            fresh.push({ slot, hi, lo });
            pos += n;
            continue;
          }
        }
        await writeFresh();
        await this.writeCluster(pos, buf.subarray(pos - offset, pos - offset + n));
        pos += n;
      }
      await writeFresh();
    });
  }

  /** Writes the data of clusters just allocated at `host`; a failed write frees them again. */
  private async writeNew(data: Uint8Array, host: number): Promise<void> {
    try {
      await this.file.write(data, host);
    } catch (err) {
      await this.tables.refcounts.unallocate(host, data.length / this.cs);
      throw err;
    }
  }

  /** The entry has its own host cluster (data or preallocated zeroes): it is reused. */
  private ownsHost(hi: number, lo: number): boolean {
    if ((hi & COMPRESSED) !== 0 || (hi & COPIED) === 0) return false;
    return entryOffset(hi, lo) !== 0;
  }

  protected override zeroAt(offset: number, length: number, opts: ZeroOptions): Promise<void> {
    return this.locked(() => this.zeroRange(offset, length, opts.mayTrim ?? false, false));
  }

  protected override trimAt(offset: number, length: number): Promise<void> {
    return this.locked(() => this.zeroRange(offset, length, true, true));
  }

  protected override flushAll(): Promise<void> {
    return this.mutex.run(() => this.tables.flush());
  }

  /** Runs a change under the metadata lock, flushing when many tables are dirty. */
  private locked(fn: () => Promise<void>): Promise<void> {
    return this.mutex.run(async () => {
      await fn();
      if (this.tables.dirtyCount > MAX_DIRTY_TABLES) await this.tables.flush();
    });
  }

  private async zeroRange(offset: number, length: number, mayTrim: boolean, trim: boolean) {
    const end = offset + length;
    for (let pos = offset; pos < end; ) {
      const n = Math.min(this.cs - (pos % this.cs), end - pos);
      const whole = n === this.cs || (pos % this.cs === 0 && pos + n === this.size);
      if (whole && this.header.version === 3) await this.zeroCluster(pos, mayTrim);
      else if (whole && trim) await this.deallocate(pos);
      else if (!trim && !(await this.readsZero(pos, n))) {
        await this.writeCluster(pos, new Uint8Array(n));
      }
      pos += n;
    }
  }

  /** The L2 table and index for a guest offset; `create` allocates a missing table. */
  private async slot(guest: number, create: boolean): Promise<Slot | null> {
    const cluster = Math.floor(guest / this.cs);
    const l1i = Math.floor(cluster / this.l2Entries);
    const l1 = this.tables.l1;
    let off = entryOffset(l1.readUInt32BE(l1i * 8), l1.readUInt32BE(l1i * 8 + 4));
    let t: Buffer;
    if (off === 0) {
      if (!create) return null;
      off = await this.tables.refcounts.allocate(1);
      t = this.tables.adopt(off);
      writeEntry(l1, l1i, off, COPIED);
      this.tables.markL1();
    } else t = await this.tables.table(off);
    return { t, at: (cluster % this.l2Entries) * 8, l2: off };
  }

  private async writeCluster(guest: number, data: Uint8Array): Promise<void> {
    const { t, at, l2 } = (await this.slot(guest, true))!;
    const hi = t.readUInt32BE(at);
    const lo = t.readUInt32BE(at + 4);
    const within = guest % this.cs;
    const compressed = (hi & COMPRESSED) !== 0;
    const host = compressed ? 0 : entryOffset(hi, lo);
    const owned = host !== 0 && (hi & COPIED) !== 0;
    if (owned) this.tables.refuseMetadata(host);
    if (owned && (lo & ZERO_FLAG) === 0) {
      await this.file.write(data, host + within);
      return;
    }
    // A new cluster (or an owned zero-flagged one): its whole guest content, then the write.
    const start = guest - within;
    let cluster = data;
    if (data.length !== this.cs) {
      cluster = new Uint8Array(this.cs);
      if (!owned) {
        await this.inner.read(cluster.subarray(0, Math.min(this.cs, this.size - start)), start);
      }
      cluster.set(data, within);
    }
    const target = owned ? host : await this.tables.refcounts.allocate(1);
    if (owned) await this.file.write(cluster, target);
    else await this.writeNew(cluster, target);
    if (!owned) this.release(hi, lo);
    writeEntry(t, at / 8, target, COPIED);
    this.tables.markL2(l2);
  }

  /** Sets the zero flag on a whole cluster (v3). */
  private async zeroCluster(guest: number, mayTrim: boolean): Promise<void> {
    if (await this.readsZero(guest, this.cs)) return;
    const { t, at, l2 } = (await this.slot(guest, true))!;
    const hi = t.readUInt32BE(at);
    const lo = t.readUInt32BE(at + 4);
    const compressed = (hi & COMPRESSED) !== 0;
    const host = compressed ? 0 : entryOffset(hi, lo);
    const owned = host !== 0 && (hi & COPIED) !== 0;
    if (owned) {
      if ((lo & ZERO_FLAG) !== 0) return;
      this.tables.refuseMetadata(host);
      writeEntry(t, at / 8, host, COPIED);
      t.writeUInt32BE((t.readUInt32BE(at + 4) | ZERO_FLAG) >>> 0, at + 4);
      // The cluster keeps its storage (qemu's ZERO_ALLOC); punching it only saves space.
      if (mayTrim) this.file.trim(host, this.cs);
    } else {
      if (!compressed && host === 0 && (lo & ZERO_FLAG) !== 0) return;
      this.release(hi, lo);
      t.writeUInt32BE(0, at);
      t.writeUInt32BE(ZERO_FLAG, at + 4);
    }
    this.tables.markL2(l2);
  }

  /** Drops a whole cluster's mapping (v2 trim): reads fall through to the backing file. */
  private async deallocate(guest: number): Promise<void> {
    const s = await this.slot(guest, false);
    if (!s) return;
    const { t, at, l2 } = s;
    const hi = t.readUInt32BE(at);
    const lo = t.readUInt32BE(at + 4);
    if (hi === 0 && lo === 0) return;
    const compressed = (hi & COMPRESSED) !== 0;
    const host = compressed ? 0 : entryOffset(hi, lo);
    if (compressed || host !== 0) this.releaseAny(hi, lo);
    t.writeUInt32BE(0, at);
    t.writeUInt32BE(0, at + 4);
    this.tables.markL2(l2);
  }

  /** Queues the release of what an entry being replaced referenced (not an owned cluster). */
  private release(hi: number, lo: number): void {
    if ((hi & COMPRESSED) !== 0) {
      const r = compressedRange(hi, lo, this.header.clusterBits);
      this.tables.refcounts.release(r.offset, r.end);
      return;
    }
    const host = entryOffset(hi, lo);
    // A cluster shared with a snapshot (no COPIED flag) loses this image's reference.
    if (host !== 0 && (hi & COPIED) === 0) this.tables.refcounts.release(host, host + this.cs);
  }

  private releaseAny(hi: number, lo: number): void {
    if ((hi & COMPRESSED) !== 0) return this.release(hi, lo);
    const host = entryOffset(hi, lo);
    if (host !== 0) this.tables.refcounts.release(host, host + this.cs);
  }

  /**
   * True when this layer itself makes [guest, guest+n) read as zeroes (zero flag, or nothing
   * below): a backing file's zeroes do not count, as the backing may change (rebase).
   */
  private async readsZero(guest: number, n: number): Promise<boolean> {
    for await (const e of this.inner.mapping(guest, Math.min(n, this.size - guest))) {
      if (!e.zero || (e.depth > 0 && this.backing)) return false;
    }
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.mutex.run(() => this.tables.flush());
    } finally {
      await this.inner.close();
    }
  }
}

interface Slot {
  /** The L2 table, its host offset, and the entry's byte offset in it. */
  t: Buffer;
  l2: number;
  at: number;
}
