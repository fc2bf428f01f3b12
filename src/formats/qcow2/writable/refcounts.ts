/**
 * Refcounts of an existing qcow2 file opened for writing: the refcount table and the blocks it
 * points at, loaded on demand and changed in memory; `flush` (state.ts) writes them out in
 * crash-safe order. Clusters are only ever allocated at the end of the file and never reused,
 * so a stale on-disk table can never point at a cluster that now holds something else.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../../errors.js';
import type { LocalFile } from '../../../io/file.js';
import { readExact } from '../reader.js';

export class Refcounts {
  /** Next free host offset (end of everything allocated, cluster aligned). */
  end: number;
  private table: Buffer;
  tableOffset: number;
  tableClusters: number;
  /** The table moved (grew): the header must point at the new one. */
  tableMoved = false;
  tableDirty = false;
  private readonly blocks = new Map<number, Buffer>();
  /** Clusters holding refcount blocks, those allocated since opening too. */
  private readonly blockClusters = new Set<number>();
  readonly dirtyBlocks = new Set<number>();
  /** Clusters whose reference goes away once the new tables are on disk. */
  private frees: number[] = [];
  private readonly cs: number;
  private readonly bits: number;
  private readonly perBlock: number;
  private readonly max: number;

  constructor(
    private readonly file: LocalFile,
    clusterSize: number,
    refcountOrder: number,
    table: Uint8Array,
    tableOffset: number,
    tableClusters: number,
  ) {
    this.cs = clusterSize;
    this.bits = 2 ** refcountOrder;
    this.perBlock = (clusterSize * 8) / this.bits;
    this.max = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.table = Buffer.from(table.buffer, table.byteOffset, table.byteLength);
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    this.end = Math.ceil(file.size / clusterSize) * clusterSize;
    // Never hand out a cluster that the table itself places past the end of the file.
    for (let b = 0; b < this.tableEntries; b++) {
      const off = this.blockOffset(b);
      if (off !== 0) {
        this.end = Math.max(this.end, off + clusterSize);
        this.blockClusters.add(off / clusterSize);
      }
    }
  }

  static async load(
    file: LocalFile,
    clusterSize: number,
    refcountOrder: number,
    tableOffset: number,
    tableClusters: number,
  ): Promise<Refcounts> {
    const bytes = await readExact(file, tableOffset, tableClusters * clusterSize, 'refcount table');
    return new Refcounts(file, clusterSize, refcountOrder, bytes, tableOffset, tableClusters);
  }

  get pendingFrees(): number {
    return this.frees.length;
  }

  private get tableEntries(): number {
    return this.table.length / 8;
  }

  private blockOffset(b: number): number {
    const v = this.table.readBigUInt64BE(b * 8);
    const off = Number(v & ~0x1ffn);
    if (off % this.cs !== 0 || !Number.isSafeInteger(off)) {
      throw new CorruptImageError(
        `${this.file.name}: refcount block ${b} at ${off} is not cluster aligned`,
      );
    }
    return off;
  }

  /**
   * Whether the refcount table or a refcount block is at host cluster `cluster`, including
   * those allocated while the image is open (at the end of the file, where an entry of a
   * crafted image may already point).
   */
  holdsMetadata(cluster: number): boolean {
    const first = this.tableOffset / this.cs;
    return (
      this.blockClusters.has(cluster) || (cluster >= first && cluster < first + this.tableClusters)
    );
  }

  /** New clusters at the end of the file, refcount 1 each; returns the first host offset. */
  async allocate(clusters: number): Promise<number> {
    const at = this.end;
    this.end += clusters * this.cs;
    for (let i = 0; i < clusters; i++) await this.add(at / this.cs + i, 1);
    return at;
  }

  /**
   * Gives back clusters `allocate` just returned, whose data could not be written (ENOSPC):
   * nothing references them yet, so they are freed now, and handed out again when they are
   * still the last ones. Without this each failed write leaked its clusters.
   */
  async unallocate(at: number, clusters: number): Promise<void> {
    for (let i = 0; i < clusters; i++) await this.add(at / this.cs + i, -1);
    if (this.end === at + clusters * this.cs) this.end = at;
  }

  /** Drops one reference from each cluster overlapping [offset, end) after the next flush. */
  release(offset: number, end: number): void {
    for (let c = Math.floor(offset / this.cs); c * this.cs < end; c++) this.frees.push(c);
  }

  private async add(cluster: number, delta: number): Promise<void> {
    const b = Math.floor(cluster / this.perBlock);
    const block = await this.block(b, delta > 0);
    if (!block) return;
    const i = cluster % this.perBlock;
    const next = this.get(block, i) + delta;
    if (next < 0) {
      throw new CorruptImageError(
        `${this.file.name}: refcount of cluster at ${cluster * this.cs} would drop below 0`,
      );
    }
    if (next > this.max) {
      throw new UnsupportedFeatureError(
        `${this.file.name}: refcount of cluster at ${cluster * this.cs} would exceed ${this.max}`,
      );
    }
    this.set(block, i, next);
    this.dirtyBlocks.add(b);
  }

  /** Refcount block `b`, loaded or (with `create`) allocated at the end of the file. */
  private async block(b: number, create: boolean): Promise<Buffer | undefined> {
    const hit = this.blocks.get(b);
    if (hit) return hit;
    if (b >= this.tableEntries) {
      if (!create) return undefined;
      await this.growTable(b);
      // Refcounting the new table may have created block `b` already.
      const made = this.blocks.get(b);
      if (made) return made;
    }
    const off = this.blockOffset(b);
    if (off !== 0) {
      const bytes = await readExact(this.file, off, this.cs, 'refcount block');
      const block = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.blocks.set(b, block);
      return block;
    }
    if (!create) return undefined;
    const at = this.end;
    this.end += this.cs;
    const block = Buffer.alloc(this.cs);
    this.blockClusters.add(at / this.cs);
    this.blocks.set(b, block);
    this.dirtyBlocks.add(b);
    this.table.writeBigUInt64BE(BigInt(at), b * 8);
    this.tableDirty = true;
    // The new block's own refcount (often in itself).
    await this.add(at / this.cs, 1);
    return block;
  }

  /** A larger table at the end of the file; the old one is released after the header moves. */
  private async growTable(minIndex: number): Promise<void> {
    const entriesPerCluster = this.cs / 8;
    const want = Math.max(minIndex + 2, this.tableEntries * 2);
    const clusters = Math.ceil(want / entriesPerCluster);
    const table = Buffer.alloc(clusters * this.cs);
    this.table.copy(table);
    this.release(this.tableOffset, this.tableOffset + this.tableClusters * this.cs);
    this.table = table;
    this.tableOffset = this.end;
    this.tableClusters = clusters;
    this.end += clusters * this.cs;
    this.tableMoved = true;
    this.tableDirty = true;
    for (let i = 0; i < clusters; i++) await this.add(this.tableOffset / this.cs + i, 1);
  }

  /** Writes the dirty refcount blocks (increments only; releases wait for applyFrees). */
  async writeBlocks(): Promise<void> {
    for (const b of [...this.dirtyBlocks].sort((x, y) => x - y)) {
      await this.file.write(this.blocks.get(b)!, this.blockOffset(b));
    }
    this.dirtyBlocks.clear();
  }

  async writeTable(): Promise<void> {
    await this.file.write(this.table, this.tableOffset);
    this.tableDirty = false;
  }

  /** Applies the releases recorded since the last flush (in memory; written by writeBlocks). */
  async applyFrees(): Promise<void> {
    const frees = this.frees;
    this.frees = [];
    for (const c of frees) await this.add(c, -1);
  }

  private get(block: Buffer, i: number): number {
    switch (this.bits) {
      case 8:
        return block[i]!;
      case 16:
        return block.readUInt16BE(i * 2);
      case 32:
        return block.readUInt32BE(i * 4);
      case 64:
        return Number(block.readBigUInt64BE(i * 8));
      default: {
        const bit = i * this.bits;
        return (block[bit >> 3]! >> (bit & 7)) & (2 ** this.bits - 1);
      }
    }
  }

  private set(block: Buffer, i: number, v: number): void {
    switch (this.bits) {
      case 8:
        block[i] = v;
        return;
      case 16:
        block.writeUInt16BE(v, i * 2);
        return;
      case 32:
        block.writeUInt32BE(v, i * 4);
        return;
      case 64:
        block.writeBigUInt64BE(BigInt(v), i * 8);
        return;
      default: {
        const bit = i * this.bits;
        const mask = (2 ** this.bits - 1) << (bit & 7);
        block[bit >> 3] = (block[bit >> 3]! & ~mask) | (v << (bit & 7));
      }
    }
  }
}
