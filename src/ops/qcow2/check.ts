/**
 * A read-only qcow2 consistency check that counts as qemu-img check does (qemu's
 * block/qcow2-refcount.c): every cluster the metadata references is counted, the counts are
 * compared with the stored refcounts (fewer stored: a corruption; more: a leak), and the
 * COPIED flags must match refcount 1. Messages name each finding, as qemu prints them.
 */
import { DiskpipeError } from '../../errors.js';
import {
  AUTOCLEAR_BITMAPS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  MAX_L1_BYTES,
  type Qcow2Header,
} from '../../formats/qcow2/header.js';
import type { ByteSource } from '../../image/types.js';
import {
  COMPRESSED,
  COPIED,
  entries,
  OFFSET_MASK,
  offsetOf,
  RefcountCodec,
  readHeader,
  readZeroFilled,
  ZERO,
} from './file.js';

export interface CheckResult {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** One line per finding (qemu prints these on stderr). */
  messages: string[];
  /** Header flags worth a note (the corrupt bit does not change qemu's counts). */
  marked: Array<'corrupt' | 'dirty'>;
}

const L1_RESERVED = 0x7f000000000001ffn;
const L2_RESERVED = 0x3f000000000001fen;
const REFT_RESERVED = 0x1ffn;
const REFT_OFFSET = 0xfffffffffffffe00n;
const BME_RESERVED = 0xff000000000001fen;
const BME_ALL_ONES = 1n;
/** Most clusters the in-memory count may cover (references far past the end of the file). */
const MAX_COUNTED_CLUSTERS = 2 ** 27;

/** Reference counts computed from the metadata, one per host cluster. */
class Counts {
  private counts: Uint32Array;
  size: number;

  constructor(size: number) {
    if (size >= MAX_COUNTED_CLUSTERS) {
      throw new DiskpipeError('UNSUPPORTED', `the file has too many clusters (${size}) to check`);
    }
    this.size = size;
    this.counts = new Uint32Array(size);
  }

  get(k: number): number {
    return k < this.counts.length ? this.counts[k]! : 0;
  }

  increment(k: number): number {
    if (k >= this.counts.length) {
      if (k >= MAX_COUNTED_CLUSTERS) {
        throw new DiskpipeError(
          'CORRUPT',
          `a reference to cluster ${k} lies too far past the end of the file to check`,
        );
      }
      const grown = new Uint32Array(Math.max(k + 1, this.counts.length * 2));
      grown.set(this.counts);
      this.counts = grown;
    }
    if (k >= this.size) this.size = k + 1;
    return ++this.counts[k]!;
  }
}

export async function checkQcow2(source: ByteSource): Promise<CheckResult> {
  const h = await readHeader(source);
  return new Checker(source, h).run();
}

class Checker {
  private readonly cs: number;
  private readonly codec: RefcountCodec;
  private readonly counts: Counts;
  private readonly res: CheckResult;
  private readonly l2Size: number;
  private readonly hasDataFile: boolean;
  private reftable: BigUint64Array = new BigUint64Array(0);
  /** qemu's refcount_max as a number (counts are 32-bit here, far below 2^53). */
  private readonly maxCount: number;
  private readonly blocks = new Map<number, Uint8Array>();

  constructor(
    private readonly source: ByteSource,
    private readonly h: Qcow2Header,
  ) {
    this.cs = h.clusterSize;
    this.codec = new RefcountCodec(h.refcountOrder, h.clusterSize);
    this.maxCount = Math.min(Number(this.codec.max), 0xffffffff);
    this.counts = new Counts(Math.ceil(source.size / this.cs));
    this.l2Size = h.clusterSize / (h.extendedL2 ? 16 : 8);
    this.hasDataFile = h.dataFile !== undefined;
    this.res = {
      checkErrors: 0,
      corruptions: 0,
      leaks: 0,
      imageEndOffset: 0,
      totalClusters: Math.ceil((Math.ceil(h.size / 512) * 512) / this.cs),
      allocatedClusters: 0,
      fragmentedClusters: 0,
      compressedClusters: 0,
      messages: [],
      marked: [],
    };
    if (h.incompatible & INCOMPAT_CORRUPT) this.res.marked.push('corrupt');
    if (h.incompatible & INCOMPAT_DIRTY) this.res.marked.push('dirty');
  }

  private say(line: string): void {
    this.res.messages.push(line);
  }

  async run(): Promise<CheckResult> {
    const h = this.h;
    this.reftable = entries(
      await readZeroFilled(this.source, h.refcountTableOffset, h.refcountTableClusters * this.cs),
    );
    this.inc(0, this.cs); // header
    await this.checkL1(h.l1TableOffset, h.l1Size, true);
    await this.checkSnapshots();
    this.inc(h.refcountTableOffset, h.refcountTableClusters * this.cs);
    await this.checkBitmaps();
    this.checkRefblocks();
    await this.compare();
    await this.checkCopiedFlags();
    return this.res;
  }

  /** Counts one more reference to each cluster of [offset, offset + size). */
  private inc(offset: number, size: number): void {
    if (size <= 0) return;
    if (offset + size - this.source.size >= this.cs) {
      this.say(
        `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset ${hex(offset)} size ${hex(size)}`,
      );
      this.res.corruptions++;
      return;
    }
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) {
      if (this.counts.get(k) >= this.maxCount) {
        this.say(`ERROR: overflow cluster offset=0x${(k * this.cs).toString(16)}`);
        this.res.corruptions++;
        continue;
      }
      this.counts.increment(k);
    }
  }

  private async checkL1(offset: number, size: number, active: boolean): Promise<void> {
    this.inc(offset, size * 8);
    if (size === 0) return;
    const l1 = entries(await readZeroFilled(this.source, offset, size * 8));
    for (let i = 0; i < size; i++) {
      const e = l1[i]!;
      if (e === 0n) continue;
      if (e & L1_RESERVED) {
        this.say(`ERROR found L1 entry with reserved bits set: ${hexRaw(e)}`);
        this.res.corruptions++;
      }
      const l2 = offsetOf(e);
      this.inc(l2, this.cs);
      if (l2 % this.cs !== 0) {
        this.say(
          `ERROR l2_offset=${hexRaw(BigInt(l2))}: Table is not cluster aligned; L1 entry corrupted`,
        );
        this.res.corruptions++;
      }
      await this.checkL2(l2, active);
    }
  }

  private async checkL2(offset: number, active: boolean): Promise<void> {
    const table = await readZeroFilled(this.source, offset, this.cs);
    const dv = new DataView(table.buffer);
    const ext = this.h.extendedL2;
    const allAlloc = 0xffffffffn;
    let nextContiguous = 0;
    for (let i = 0; i < this.l2Size; i++) {
      let e = dv.getBigUint64(i * (ext ? 16 : 8));
      const bitmap = ext ? dv.getBigUint64(i * 16 + 8) : 0n;
      const type = this.clusterType(e);
      if (type !== 'compressed' && e & L2_RESERVED) {
        this.say(`ERROR found l2 entry with reserved bits set: ${hexRaw(e)}`);
        this.res.corruptions++;
      }
      if (type === 'compressed') {
        if (e & COPIED) {
          this.say(
            `ERROR: coffset=${hex(e & this.compressedMask())}: copied flag must never be set for compressed clusters`,
          );
          e &= ~COPIED;
          this.res.corruptions++;
        }
        if (this.hasDataFile) {
          this.say('ERROR compressed cluster with data file');
          this.res.corruptions++;
        }
        if (bitmap) {
          this.say(`ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap`);
          this.res.corruptions++;
        }
        const { offset: coffset, size } = this.compressedRange(e);
        this.inc(coffset, size);
        if (active) {
          this.res.allocatedClusters++;
          this.res.compressedClusters++;
          this.res.fragmentedClusters++;
        }
      } else if (type === 'normal' || type === 'zero-alloc') {
        const off = offsetOf(e);
        if ((bitmap >> 32n) & bitmap) {
          this.say(
            `ERROR offset=${hexRaw(BigInt(off))}: Allocated cluster has corrupted subcluster allocation bitmap`,
          );
          this.res.corruptions++;
        }
        if (off % this.cs !== 0) {
          this.res.corruptions++;
          const data = ext ? (bitmap & allAlloc) !== 0n : !(e & ZERO);
          this.say(
            data
              ? `ERROR offset=${hexRaw(BigInt(off))}: Data cluster is not properly aligned; L2 entry corrupted.`
              : `ERROR offset=${hexRaw(BigInt(off))}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
          );
        }
        if (active) {
          this.res.allocatedClusters++;
          if (nextContiguous && off !== nextContiguous) this.res.fragmentedClusters++;
          nextContiguous = off + this.cs;
        }
        if (!this.hasDataFile) this.inc(off, this.cs);
      } else if (bitmap & allAlloc) {
        this.say('ERROR: Unallocated cluster has non-zero subcluster allocation bitmap');
        this.res.corruptions++;
      }
    }
  }

  private clusterType(
    e: bigint,
  ): 'compressed' | 'zero-plain' | 'zero-alloc' | 'unallocated' | 'normal' {
    if (e & COMPRESSED) return 'compressed';
    if (e & ZERO && !this.h.extendedL2) return e & OFFSET_MASK ? 'zero-alloc' : 'zero-plain';
    if (!(e & OFFSET_MASK)) return this.hasDataFile && e & COPIED ? 'normal' : 'unallocated';
    return 'normal';
  }

  private compressedMask(): bigint {
    return (1n << BigInt(62 - (this.h.clusterBits - 8))) - 1n;
  }

  private compressedRange(e: bigint): { offset: number; size: number } {
    const shift = BigInt(62 - (this.h.clusterBits - 8));
    const sizeMask = (1n << BigInt(this.h.clusterBits - 8)) - 1n;
    const offset = Number(e & this.compressedMask());
    const sectors = Number((e >> shift) & sizeMask) + 1;
    return { offset, size: sectors * 512 - (offset % 512) };
  }

  private async checkSnapshots(): Promise<void> {
    const h = this.h;
    if (h.nbSnapshots === 0) return;
    if (this.hasDataFile) {
      this.say(`ERROR ${h.nbSnapshots} snapshots in image with data file`);
      this.res.corruptions++;
    }
    let pos = h.snapshotsOffset;
    const found: Array<{ id: string; name: string; l1Offset: number; l1Size: number }> = [];
    for (let i = 0; i < h.nbSnapshots; i++) {
      const fixed = await readZeroFilled(this.source, pos, 40);
      const dv = new DataView(fixed.buffer);
      const idLen = dv.getUint16(12);
      const nameLen = dv.getUint16(14);
      const extraLen = dv.getUint32(36);
      const names = await readZeroFilled(this.source, pos + 40 + extraLen, idLen + nameLen);
      const text = new TextDecoder();
      found.push({
        id: text.decode(names.subarray(0, idLen)),
        name: text.decode(names.subarray(idLen)),
        l1Offset: offsetOf(dv.getBigUint64(0), 0x00ffffffffffffffn),
        l1Size: dv.getUint32(8),
      });
      pos += Math.ceil((40 + extraLen + idLen + nameLen) / 8) * 8;
    }
    for (const sn of found) {
      if (sn.l1Offset % this.cs !== 0) {
        this.say(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${hex(sn.l1Offset)}: L1 table is not cluster aligned; snapshot table entry corrupted`,
        );
        this.res.corruptions++;
        continue;
      }
      if (sn.l1Size > MAX_L1_BYTES / 8) {
        this.say(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_size=${hex(sn.l1Size)}: L1 table is too large; snapshot table entry corrupted`,
        );
        this.res.corruptions++;
        continue;
      }
      await this.checkL1(sn.l1Offset, sn.l1Size, false);
    }
    this.inc(h.snapshotsOffset, pos - h.snapshotsOffset);
  }

  private async checkBitmaps(): Promise<void> {
    const ext = this.h.bitmaps;
    if (!ext || !(this.h.autoclear & AUTOCLEAR_BITMAPS) || ext.count === 0) return;
    this.inc(ext.directoryOffset, ext.directorySize);
    const dir = await readZeroFilled(this.source, ext.directoryOffset, ext.directorySize);
    const dv = new DataView(dir.buffer);
    let pos = 0;
    for (let i = 0; i < ext.count; i++) {
      if (pos + 24 > dir.length) {
        this.say('ERROR the bitmap directory is truncated');
        this.res.corruptions++;
        return;
      }
      const tableOffset = offsetOf(dv.getBigUint64(pos), 0x00ffffffffffffffn);
      const tableSize = dv.getUint32(pos + 8);
      const nameLen = dv.getUint16(pos + 18);
      const extraLen = dv.getUint32(pos + 20);
      pos += Math.ceil((24 + extraLen + nameLen) / 8) * 8;
      this.inc(tableOffset, tableSize * 8);
      if (tableOffset % this.cs !== 0 || tableSize * 8 > MAX_L1_BYTES) {
        this.res.corruptions++;
        break;
      }
      const table = entries(await readZeroFilled(this.source, tableOffset, tableSize * 8));
      for (const e of table) {
        const off = offsetOf(e);
        if (e & BME_RESERVED || (off !== 0 && (e & BME_ALL_ONES || off % this.cs !== 0))) {
          this.res.corruptions++;
          continue;
        }
        if (off !== 0) this.inc(off, this.cs);
      }
    }
  }

  private checkRefblocks(): void {
    for (let i = 0; i < this.reftable.length; i++) {
      const e = this.reftable[i]!;
      const off = Number(e & REFT_OFFSET);
      const cluster = Math.floor(off / this.cs);
      if (e & REFT_RESERVED) {
        this.say(`ERROR refcount table entry ${i} has reserved bits set`);
        this.res.corruptions++;
        continue;
      }
      if (off % this.cs !== 0) {
        this.say(
          `ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`,
        );
        this.res.corruptions++;
        continue;
      }
      if (cluster >= this.counts.size) {
        this.res.corruptions++;
        this.say(`ERROR refcount block ${i} is outside image`);
        continue;
      }
      if (off !== 0) {
        this.inc(off, this.cs);
        if (this.counts.get(cluster) !== 1) {
          this.say(`ERROR refcount block ${i} refcount=${this.counts.get(cluster)}`);
          this.res.corruptions++;
        }
      }
    }
  }

  /** Refcount block `index`: null when the table has none, undefined when unaligned. */
  private async storedBlock(index: number): Promise<Uint8Array | null | undefined> {
    if (index >= this.reftable.length) return null;
    const off = Number(this.reftable[index]! & REFT_OFFSET);
    if (off === 0) return null;
    if (off % this.cs !== 0) return undefined;
    let block = this.blocks.get(index);
    if (!block) {
      block = await readZeroFilled(this.source, off, this.cs);
      this.blocks.set(index, block);
    }
    return block;
  }

  /** The stored refcount of a cluster; undefined when its refcount block is unaligned. */
  private async stored(cluster: number): Promise<bigint | undefined> {
    const block = await this.storedBlock(Math.floor(cluster / this.codec.perBlock));
    if (block === undefined) return undefined;
    return block === null ? 0n : this.codec.get(block, cluster % this.codec.perBlock);
  }

  private async compare(): Promise<void> {
    let highest = 0;
    const perBlock = this.codec.perBlock;
    const size = this.counts.size;
    for (let index = 0; index * perBlock < size; index++) {
      const block = await this.storedBlock(index);
      const end = Math.min(size, (index + 1) * perBlock);
      for (let i = index * perBlock; i < end; i++) {
        if (block === undefined) {
          this.say(`Can't get refcount for cluster ${i}: Input/output error`);
          this.res.checkErrors++;
          continue;
        }
        const stored = block === null ? 0 : this.codec.getNumber(block, i % perBlock);
        const counted = this.counts.get(i);
        if (stored > 0 || counted > 0) highest = i;
        if (stored !== counted) {
          const exact = block === null ? 0n : this.codec.get(block, i % perBlock);
          this.say(
            `${stored < counted ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${exact} reference=${counted}`,
          );
          if (stored < counted) this.res.corruptions++;
          else this.res.leaks++;
        }
      }
      this.blocks.delete(index); // bound memory: blocks behind us are not needed here again
    }
    this.res.imageEndOffset = (highest + 1) * this.cs;
  }

  private async checkCopiedFlags(): Promise<void> {
    const h = this.h;
    const l1 = entries(await readZeroFilled(this.source, h.l1TableOffset, h.l1Size * 8));
    for (let i = 0; i < h.l1Size; i++) {
      const e = l1[i]!;
      const l2 = offsetOf(e);
      if (l2 === 0) continue;
      const refcount = await this.stored(Math.floor(l2 / this.cs));
      if (refcount === undefined) continue;
      if ((refcount === 1n) !== ((e & COPIED) !== 0n)) {
        this.res.corruptions++;
        this.say(
          `ERROR OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hexRaw(e)} refcount=${refcount}`,
        );
      }
      const table = await readZeroFilled(this.source, l2, this.cs);
      const dv = new DataView(table.buffer);
      const step = h.extendedL2 ? 16 : 8;
      for (let j = 0; j < this.l2Size; j++) {
        // Numbers, not bigints, on this hot path: flags in the high word, offset bits 9-55.
        const hi = dv.getUint32(j * step);
        const lo = dv.getUint32(j * step + 4);
        if (hi === 0 && lo === 0) continue;
        const entry = dv.getBigUint64(j * step);
        const type = this.clusterType(entry);
        if (type !== 'normal' && type !== 'zero-alloc') continue;
        const offset = (hi & 0xffffff) * 2 ** 32 + ((lo & ~0x1ff) >>> 0);
        const copied = (hi & 0x80000000) !== 0;
        let rc = 1;
        if (!this.hasDataFile) {
          const block = await this.storedBlock(Math.floor(offset / this.cs / this.codec.perBlock));
          if (block === undefined) continue;
          const k = Math.floor(offset / this.cs) % this.codec.perBlock;
          rc = block === null ? 0 : this.codec.getNumber(block, k);
        }
        if ((rc === 1) !== copied) {
          this.res.corruptions++;
          const exact = this.hasDataFile ? 1n : await this.stored(Math.floor(offset / this.cs));
          this.say(`ERROR OFLAG_COPIED data cluster: l2_entry=${hexRaw(entry)} refcount=${exact}`);
        }
      }
    }
  }
}

function hex(n: bigint | number): string {
  return `0x${n.toString(16)}`;
}

function hexRaw(n: bigint): string {
  return n.toString(16);
}
