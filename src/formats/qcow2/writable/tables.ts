/**
 * The metadata of a qcow2 file open for writing: the L1 table and every L2 table loaded so far,
 * shared with the reader's mapping (it reads the same buffers, so reads see writes at once),
 * plus the refcounts. Changes stay in memory until `flush`, which writes them in an order
 * where a crash at any point leaves at worst leaked clusters, never a reference to a cluster
 * that is not written yet:
 *   data (fsync) → refcount blocks (fsync) → refcount table (fsync) → header (fsync)
 *   → L2 tables (fsync) → L1 table (fsync) → released refcounts (fsync).
 * This is qemu's cache-flush order without lazy refcounts; the dirty bit is never needed, so
 * any reader (and `qemu-img check`) sees a consistent image after a crash.
 */
import { CorruptImageError } from '../../../errors.js';
import type { LocalFile } from '../../../io/file.js';
import { readExact } from '../reader.js';
import { entryOffset } from '../writer/layout.js';
import type { Refcounts } from './refcounts.js';

/** Byte offsets of the header fields a writer rewrites. */
const HEADER_REFCOUNT_TABLE = 48;

export class Qcow2Tables {
  readonly l1: Buffer;
  private l1Dirty = false;
  private readonly l2 = new Map<number, Buffer>();
  private readonly dirtyL2 = new Set<number>();
  /**
   * Host clusters holding metadata: header, L1 table, refcount table, L2 tables (those of the
   * open image, and L2 tables added since); the refcount blocks, old and new, are the
   * refcounts' own to tell (`holdsMetadata`). A data entry of a crafted image
   * may point at one; writing guest data through it would destroy the tables, which qemu's
   * overlap check refuses too.
   */
  private readonly metadata = new Set<number>();

  constructor(
    readonly file: LocalFile,
    readonly clusterSize: number,
    l1: Uint8Array,
    readonly l1Offset: number,
    readonly refcounts: Refcounts,
  ) {
    this.l1 = Buffer.from(l1.buffer, l1.byteOffset, l1.byteLength);
    const cs = clusterSize;
    const span = (offset: number, bytes: number) => {
      for (let c = offset / cs; c < (offset + bytes) / cs; c++) this.metadata.add(c);
    };
    span(0, cs);
    span(l1Offset, Math.max(cs, this.l1.length));
    span(refcounts.tableOffset, refcounts.tableClusters * cs);
    for (let i = 0; i < this.l1.length / 8; i++) {
      const off = entryOffset(this.l1.readUInt32BE(i * 8), this.l1.readUInt32BE(i * 8 + 4));
      if (off !== 0) span(off, cs);
    }
  }

  /** Refuses to write guest data at `host` when metadata lives there (a crafted image). */
  refuseMetadata(host: number): void {
    const cluster = Math.floor(host / this.clusterSize);
    if (!this.metadata.has(cluster) && !this.refcounts.holdsMetadata(cluster)) return;
    throw new CorruptImageError(
      `${this.file.name}: an L2 entry points at the image's own metadata (host offset ${host}); writing there would destroy it (repair the image with qemu-img check -r all)`,
    );
  }

  /** File size as the mapping must see it: clusters allocated in memory count as present. */
  fileEnd(): number {
    return Math.max(this.file.size, this.refcounts.end);
  }

  /** Loads (once) the L2 table at `offset`; the reader's map and the writer share it. */
  async table(offset: number): Promise<Buffer> {
    const hit = this.l2.get(offset);
    if (hit) return hit;
    const bytes = await readExact(this.file, offset, this.clusterSize, 'L2 table');
    // Another load may have finished first: keep the one already shared.
    const again = this.l2.get(offset);
    if (again) return again;
    const t = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.l2.set(offset, t);
    return t;
  }

  /** A new, empty L2 table at `offset` (allocated by the caller). */
  adopt(offset: number): Buffer {
    const t = Buffer.alloc(this.clusterSize);
    this.metadata.add(offset / this.clusterSize);
    this.l2.set(offset, t);
    this.dirtyL2.add(offset);
    return t;
  }

  markL2(offset: number): void {
    this.dirtyL2.add(offset);
  }

  markL1(): void {
    this.l1Dirty = true;
  }

  /** Dirty tables held in memory (the writer flushes when there are many). */
  get dirtyCount(): number {
    return this.dirtyL2.size + this.refcounts.dirtyBlocks.size;
  }

  /** Writes every change in crash-safe order (see the file comment). */
  async flush(): Promise<void> {
    const rc = this.refcounts;
    const f = this.file;
    await f.sync();
    if (rc.dirtyBlocks.size > 0) {
      await rc.writeBlocks();
      await f.sync();
    }
    if (rc.tableDirty) {
      const moved = rc.tableMoved;
      await rc.writeTable();
      await f.sync();
      if (moved) {
        const field = Buffer.alloc(12);
        field.writeBigUInt64BE(BigInt(rc.tableOffset), 0);
        field.writeUInt32BE(rc.tableClusters, 8);
        await f.write(field, HEADER_REFCOUNT_TABLE);
        await f.sync();
        rc.tableMoved = false;
      }
    }
    if (this.dirtyL2.size > 0) {
      for (const off of [...this.dirtyL2].sort((a, b) => a - b)) {
        await f.write(this.l2.get(off)!, off);
      }
      this.dirtyL2.clear();
      await f.sync();
    }
    if (this.l1Dirty) {
      await f.write(this.l1, this.l1Offset);
      this.l1Dirty = false;
      await f.sync();
    }
    if (rc.pendingFrees > 0) {
      await rc.applyFrees();
      await rc.writeBlocks();
      await f.sync();
    }
  }
}
