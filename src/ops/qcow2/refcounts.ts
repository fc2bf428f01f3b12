/**
 * The stored refcounts of a qcow2 file, read block by block, and the in-place updates resize
 * makes: allocating clusters past the end of the file, with new refcount blocks when the
 * clusters fall where the table has none yet.
 */
import { DiskpipeError } from '../../errors.js';
import type { Qcow2Header } from '../../formats/qcow2/header.js';
import type { ByteSource } from '../../image/types.js';
import { entries, RefcountCodec, readZeroFilled } from './file.js';

const REFTABLE_OFFSET_MASK = 0xfffffffffffffe00n;

export class StoredRefcounts {
  readonly codec: RefcountCodec;
  private table: BigUint64Array | undefined;
  private readonly blocks = new Map<number, Uint8Array>();
  /** Indexes of blocks changed in memory, new ones (not yet in the table) included. */
  private readonly dirty = new Set<number>();
  private readonly newBlocks = new Map<number, number>();
  /** Clusters handed out by this session (their refcounts may not be raised yet). */
  private readonly reserved = new Set<number>();

  constructor(
    private readonly source: ByteSource,
    private readonly header: Qcow2Header,
  ) {
    this.codec = new RefcountCodec(header.refcountOrder, header.clusterSize);
  }

  get tableEntries(): number {
    return (this.header.refcountTableClusters * this.header.clusterSize) / 8;
  }

  async tableEntry(index: number): Promise<bigint> {
    if (!this.table) {
      const h = this.header;
      this.table = entries(
        await readZeroFilled(this.source, h.refcountTableOffset, this.tableEntries * 8),
      );
    }
    return this.table[index] ?? 0n;
  }

  /** Offset of refcount block `index` (0: none), or undefined when the entry is unusable. */
  async blockOffset(index: number): Promise<number | undefined> {
    const fresh = this.newBlocks.get(index);
    if (fresh !== undefined) return fresh;
    if (index >= this.tableEntries) return 0;
    const entry = await this.tableEntry(index);
    const off = Number(entry & REFTABLE_OFFSET_MASK);
    if ((entry & 0x1ffn) !== 0n || off % this.header.clusterSize !== 0) return undefined;
    return off;
  }

  private async block(index: number): Promise<Uint8Array | undefined> {
    let b = this.blocks.get(index);
    if (b) return b;
    const off = await this.blockOffset(index);
    if (off === undefined) return undefined;
    b =
      off === 0
        ? new Uint8Array(this.header.clusterSize)
        : await readZeroFilled(this.source, off, this.header.clusterSize);
    this.blocks.set(index, b);
    return b;
  }

  /** The refcount of a cluster; undefined when its refcount block entry is corrupt. */
  async get(cluster: number): Promise<bigint | undefined> {
    const index = Math.floor(cluster / this.codec.perBlock);
    const b = await this.block(index);
    return b && this.codec.get(b, cluster % this.codec.perBlock);
  }

  async add(cluster: number, delta: bigint): Promise<void> {
    const index = Math.floor(cluster / this.codec.perBlock);
    const b = await this.block(index);
    if (!b) throw new DiskpipeError('CORRUPT', `refcount block ${index} is corrupt`);
    const v = this.codec.get(b, cluster % this.codec.perBlock) + delta;
    this.codec.set(b, cluster % this.codec.perBlock, v);
    this.dirty.add(index);
  }

  /**
   * Allocates `count` contiguous free clusters at or past `from` (normally the end of the
   * file), giving each refcount 1 and creating the refcount blocks they need.
   */
  async allocate(from: number, count: number): Promise<number> {
    let start = from;
    for (let i = 0; i < count; i++) {
      if ((await this.get(start + i)) !== 0n || this.reserved.has(start + i)) {
        start += i + 1;
        i = -1;
      }
    }
    for (let i = 0; i < count; i++) this.reserved.add(start + i);
    for (let i = 0; i < count; i++) await this.ensureBlock(start + i);
    for (let i = 0; i < count; i++) await this.add(start + i, 1n);
    return start;
  }

  private async ensureBlock(cluster: number): Promise<void> {
    const index = Math.floor(cluster / this.codec.perBlock);
    if ((await this.blockOffset(index)) !== 0) return;
    if (index >= this.tableEntries) {
      throw new DiskpipeError(
        'UNSUPPORTED',
        'the refcount table is full; growing it is not implemented (qemu-img resize can)',
      );
    }
    // A new block lives at the first free cluster; it may cover itself.
    let at = cluster + 1;
    while ((await this.get(at)) !== 0n || this.reserved.has(at)) at++;
    this.reserved.add(at);
    this.newBlocks.set(index, at * this.header.clusterSize);
    this.blocks.set(index, new Uint8Array(this.header.clusterSize));
    this.dirty.add(index);
    await this.ensureBlock(at);
    await this.add(at, 1n);
  }

  /** Clears a table entry on disk (its block then counts nothing). */
  async clearTableEntry(
    index: number,
    write: (buf: Uint8Array, offset: number) => Promise<void>,
  ): Promise<void> {
    await this.tableEntry(index);
    this.table![index] = 0n;
    this.blocks.delete(index);
    this.dirty.delete(index);
    await write(new Uint8Array(8), this.header.refcountTableOffset + index * 8);
  }

  /** Writes changed and new refcount blocks (the table is updated by `publishNewBlocks`). */
  async writeBlocks(write: (buf: Uint8Array, offset: number) => Promise<void>): Promise<void> {
    for (const index of this.dirty) {
      const off = await this.blockOffset(index);
      if (off) await write(this.blocks.get(index)!, off);
    }
    this.dirty.clear();
  }

  /** Points the refcount table at the new blocks (after they are written and flushed). */
  async publishNewBlocks(write: (buf: Uint8Array, offset: number) => Promise<void>): Promise<void> {
    for (const [index, off] of this.newBlocks) {
      const e = new Uint8Array(8);
      new DataView(e.buffer).setBigUint64(0, BigInt(off));
      await write(e, this.header.refcountTableOffset + index * 8);
    }
  }
}

/**
 * Frees the refcount blocks that count nothing but themselves (qemu's shrink_reftable), so
 * the file can lose its tail: the table entry is cleared first, then the block's refcount.
 */
export async function dropUnusedBlocks(
  refs: StoredRefcounts,
  write: (buf: Uint8Array, offset: number) => Promise<void>,
  sync: () => Promise<void>,
): Promise<void> {
  const dropped: number[] = [];
  for (let index = 0; index < refs.tableEntries; index++) {
    const off = await refs.blockOffset(index);
    if (!off) continue;
    const own = off / refs.codec.clusterSize;
    const first = index * refs.codec.perBlock;
    let used = false;
    for (let c = first; c < first + refs.codec.perBlock && !used; c++) {
      if (c !== own && (await refs.get(c)) !== 0n) used = true;
    }
    if (used) continue;
    await refs.clearTableEntry(index, write);
    dropped.push(own);
  }
  if (dropped.length === 0) return;
  await sync();
  for (const own of dropped) {
    const index = Math.floor(own / refs.codec.perBlock);
    if ((await refs.blockOffset(index)) !== 0) await refs.add(own, -1n);
  }
  await refs.writeBlocks(write);
  await sync();
}
