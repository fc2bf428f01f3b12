/**
 * Host cluster allocation and reference counts for the writer. Clusters are handed out in
 * file order; compressed clusters are packed byte by byte into shared host clusters (as qemu
 * does). Refcounts are kept in memory, 2 bytes per host cluster (256 KiB for 8 GiB of
 * 64 KiB clusters), and written as refcount blocks + table when the image is finished.
 */
import { UsageError } from '../../../errors.js';

const MAX_REFCOUNT = 0xffff;

export interface RefcountStructures {
  tableOffset: number;
  tableClusters: number;
  /** Host offset of refcount block i, for the table. */
  blockOffsets: number[];
  /** First cluster index of the structures (everything from there is metadata). */
  firstCluster: number;
}

export class HostSpace {
  private refs = new Uint16Array(1024);
  /** Clusters in use: the next cluster handed out. */
  private next = 0;
  /** Next free byte for compressed data, or 0 when a new host cluster is needed. */
  private compressedFree = 0;
  /** Clusters holding the previous refcount structures (freed when they are rebuilt). */
  private previous: { from: number; to: number } | undefined;

  constructor(readonly clusterSize: number) {}

  /** Clusters the file spans. */
  get clusters(): number {
    return this.next;
  }

  refcount(cluster: number): number {
    return cluster < this.next ? this.refs[cluster]! : 0;
  }

  /** A new cluster with refcount 1; returns its host offset. */
  allocCluster(): number {
    const c = this.take();
    this.refs[c] = 1;
    return c * this.clusterSize;
  }

  /** Space for `length` bytes of compressed data; returns its host offset. */
  allocBytes(length: number): number {
    const cs = this.clusterSize;
    if (length <= 0 || length > cs) throw new RangeError(`compressed length ${length}`);
    let start = this.compressedFree;
    if (start !== 0) {
      const first = Math.floor(start / cs);
      const last = Math.floor((start + length - 1) / cs);
      // Spill into the next cluster only if it is the next one in the file; never let a
      // shared cluster's refcount overflow.
      const spills = last > first && this.next !== first + 1;
      if (spills || this.refs[first]! >= MAX_REFCOUNT - 1) start = 0;
    }
    if (start === 0) start = this.take() * cs;
    const end = start + length;
    // qemu counts a compressed cluster as using every byte up to the end of its last sector.
    const lastCluster = Math.floor((Math.ceil(end / 512) * 512 - 1) / cs);
    while (this.next <= lastCluster) this.take();
    for (let c = Math.floor(start / cs); c <= lastCluster; c++) this.refs[c]!++;
    this.compressedFree = end % cs === 0 ? 0 : end;
    return start;
  }

  /** Drops one reference from every cluster in [offset, end) (data being replaced). */
  release(offset: number, end: number): void {
    const cs = this.clusterSize;
    for (let c = Math.floor(offset / cs); c * cs < end; c++) {
      if (c < this.next && this.refs[c]! > 0) this.refs[c]!--;
    }
  }

  /**
   * Places refcount blocks and the refcount table after every cluster in use and returns
   * where; the structures count themselves. Structures placed by an earlier call are freed.
   */
  placeRefcounts(): RefcountStructures {
    if (this.previous) {
      for (let c = this.previous.from; c < this.previous.to; c++) this.refs[c] = 0;
    }
    const cs = this.clusterSize;
    const perBlock = cs / 2;
    const used = this.next;
    let blocks = 0;
    let tableClusters = 0;
    for (;;) {
      const total = used + blocks + tableClusters;
      const needBlocks = Math.ceil(total / perBlock);
      const needTable = Math.max(1, Math.ceil((needBlocks * 8) / cs));
      if (needBlocks === blocks && needTable === tableClusters) break;
      blocks = needBlocks;
      tableClusters = needTable;
    }
    if (tableClusters * cs > 8 * 1024 * 1024) {
      throw new UsageError('image too large for its cluster size (refcount table over 8 MiB)');
    }
    const blockOffsets: number[] = [];
    for (let i = 0; i < blocks; i++) blockOffsets.push(this.allocCluster());
    const tableOffset = this.allocCluster();
    for (let i = 1; i < tableClusters; i++) this.allocCluster();
    this.previous = { from: used, to: this.next };
    return { tableOffset, tableClusters, blockOffsets, firstCluster: used };
  }

  /** Refcount block `i` as stored on disk (big-endian 16-bit entries). */
  encodeBlock(i: number): Buffer {
    const perBlock = this.clusterSize / 2;
    const out = Buffer.alloc(this.clusterSize);
    const from = i * perBlock;
    const to = Math.min(from + perBlock, this.next);
    for (let c = from; c < to; c++) out.writeUInt16BE(this.refs[c]!, (c - from) * 2);
    return out;
  }

  private take(): number {
    if (this.next >= this.refs.length) {
      const grown = new Uint16Array(this.refs.length * 2);
      grown.set(this.refs);
      this.refs = grown;
    }
    return this.next++;
  }
}
