/**
 * ext2/3/4 free space from the block bitmaps (one per block group). Groups whose bitmap was
 * never initialised (BLOCK_UNINIT) are free except the metadata mke2fs and the kernel place
 * there. Bitmaps and descriptor blocks are read lazily through small caches, so memory stays
 * bounded on any size of filesystem. Facts from the ext4 on-disk layout documentation.
 */

import { CorruptImageError } from '../../errors.js';
import { crc32c } from '../../formats/vhdx/crc32c.js';
import { view } from '../../io/bytes.js';
import { SingleFlightLru } from '../../io/single-flight-lru.js';
import type { PartReader } from './part-reader.js';
import type { FreeSpace, Range, Verdict } from './types.js';

const SUPERBLOCK = 1024;
const MAGIC = 0xef53;

// Superblock state and feature bits.
const STATE_VALID = 0x1;
const STATE_ERROR = 0x2;
const COMPAT_SPARSE_SUPER2 = 0x200;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_MMP = 0x100;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_CSUM_SEED = 0x2000;
/** filetype, meta_bg, extents, 64bit, flex_bg, ea_inode, dirdata, csum_seed, largedir, inline_data, encrypt, casefold. */
const INCOMPAT_KNOWN =
  0x2 | 0x10 | 0x40 | 0x80 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
const RO_SPARSE_SUPER = 0x1;
const RO_GDT_CSUM = 0x10;
const RO_BIGALLOC = 0x200;
const RO_METADATA_CSUM = 0x400;
/** Everything but has_snapshot (0x80) and replica (0x800), whose blocks the bitmap may not show. */
const RO_KNOWN =
  0x1 |
  0x2 |
  0x4 |
  0x8 |
  0x10 |
  0x20 |
  0x40 |
  0x100 |
  0x200 |
  0x400 |
  0x1000 |
  0x2000 |
  0x4000 |
  0x8000 |
  0x10000;
const BG_BLOCK_UNINIT = 0x2;

const MAX_FLEX_GROUP = 1024;

/** Reads the superblock; undefined when the partition does not hold an ext filesystem. */
export async function probeExt(part: PartReader): Promise<Verdict | undefined> {
  if (part.length < SUPERBLOCK + 1024) return undefined;
  const sb = await part.bytes(SUPERBLOCK, 1024);
  const dv = view(sb);
  if (dv.getUint16(0x38, true) !== MAGIC) return undefined;
  const name = extName(
    dv.getUint32(0x5c, true),
    dv.getUint32(0x60, true),
    dv.getUint32(0x64, true),
  );
  const pass = (reason: string): Verdict => ({ kind: 'pass', filesystem: name, reason });
  const incompat = dv.getUint32(0x60, true);
  const roCompat = dv.getUint32(0x64, true);
  const state = dv.getUint16(0x3a, true);
  if (incompat & INCOMPAT_RECOVER) return pass('the journal needs recovery (needs_recovery)');
  if (state & STATE_ERROR || dv.getUint32(0x194, true) !== 0) return pass('errors recorded');
  if (!(state & STATE_VALID)) return pass('not cleanly unmounted');
  if (incompat & INCOMPAT_JOURNAL_DEV) return pass('an external journal device');
  if (incompat & INCOMPAT_MMP) return pass('multi-mount protection (may be in use elsewhere)');
  if (incompat & ~INCOMPAT_KNOWN) {
    return pass(
      `unknown incompatible features 0x${((incompat & ~INCOMPAT_KNOWN) >>> 0).toString(16)}`,
    );
  }
  if (roCompat & ~RO_KNOWN) {
    return pass(`unknown read-only features 0x${((roCompat & ~RO_KNOWN) >>> 0).toString(16)}`);
  }
  if (roCompat & RO_METADATA_CSUM) {
    // The superblock checksum is crc32c seeded with ~0, without the final inversion.
    const want = dv.getUint32(0x3fc, true);
    if (~crc32c(sb.subarray(0, 0x3fc)) >>> 0 !== want) return pass('superblock checksum mismatch');
  }
  try {
    return { kind: 'sparsify', filesystem: name, space: new ExtFreeSpace(part, sb) };
  } catch (err) {
    if (err instanceof CorruptImageError) return pass(err.message);
    throw err;
  }
}

interface Descriptor {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  bitmapCsum: number;
  bitmapCsumBits: 0 | 16 | 32;
  /** Free allocation units the descriptor counts (must agree with the bitmap). */
  freeCount: number;
  /** False when metadata_csum is on and the descriptor's own checksum does not match. */
  valid: boolean;
}

class ExtFreeSpace implements FreeSpace {
  private readonly blockSize: number;
  private readonly blocksCount: number;
  private readonly firstDataBlock: number;
  private readonly blocksPerGroup: number;
  /** Allocation unit: a block, or a cluster with bigalloc. */
  private readonly unitSize: number;
  private readonly unitsPerGroup: number;
  private readonly ratio: number;
  private readonly groups: number;
  private readonly descSize: number;
  private readonly descPerBlock: number;
  private readonly gdtBlocks: number;
  private readonly reservedGdt: number;
  private readonly metaBg: boolean;
  private readonly firstMetaBg: number;
  private readonly flexSize: number;
  private readonly sparseSuper: boolean;
  private readonly sparseSuper2: [number, number] | undefined;
  private readonly uninitValid: boolean;
  private readonly csumSeed: number | undefined;
  private readonly inodeTableBlocks: number;
  private readonly descBlocks = new SingleFlightLru<number, Uint8Array>(8);
  private readonly bitmaps = new SingleFlightLru<number, Uint8Array | undefined>(32);

  constructor(
    private readonly part: PartReader,
    sb: Uint8Array,
  ) {
    const dv = view(sb);
    const bad = (what: string) => new CorruptImageError(`ext superblock: ${what}`);
    const logBlock = dv.getUint32(0x18, true);
    if (logBlock > 6) throw bad(`block size 2^${logBlock + 10}`);
    this.blockSize = 1024 << logBlock;
    const incompat = dv.getUint32(0x60, true);
    const roCompat = dv.getUint32(0x64, true);
    const compat = dv.getUint32(0x5c, true);
    const is64 = (incompat & INCOMPAT_64BIT) !== 0;
    this.blocksCount = dv.getUint32(0x04, true) + (is64 ? dv.getUint32(0x150, true) * 2 ** 32 : 0);
    if (this.blocksCount === 0 || this.blocksCount * this.blockSize > part.length) {
      throw bad(`${this.blocksCount} blocks do not fit in the partition (${part.length} bytes)`);
    }
    this.firstDataBlock = dv.getUint32(0x14, true);
    const bigalloc = (roCompat & RO_BIGALLOC) !== 0;
    const wantFirst = this.blockSize === 1024 && !bigalloc ? 1 : 0;
    if (this.firstDataBlock !== wantFirst) throw bad(`first data block ${this.firstDataBlock}`);
    this.blocksPerGroup = dv.getUint32(0x20, true);
    if (bigalloc) {
      const logCluster = dv.getUint32(0x1c, true);
      if (logCluster < logBlock || logCluster > logBlock + 16) throw bad('cluster size');
      this.ratio = 2 ** (logCluster - logBlock);
      this.unitsPerGroup = dv.getUint32(0x24, true);
    } else {
      this.ratio = 1;
      this.unitsPerGroup = this.blocksPerGroup;
    }
    this.unitSize = this.blockSize * this.ratio;
    if (
      this.unitsPerGroup === 0 ||
      this.unitsPerGroup % 8 !== 0 ||
      this.unitsPerGroup > 8 * this.blockSize ||
      this.blocksPerGroup !== this.unitsPerGroup * this.ratio
    ) {
      throw bad(`${this.unitsPerGroup} allocation units per group`);
    }
    this.groups = Math.ceil((this.blocksCount - this.firstDataBlock) / this.blocksPerGroup);
    this.descSize = is64 ? dv.getUint16(0xfe, true) : 32;
    if (
      this.descSize < 32 ||
      this.descSize > 1024 ||
      (this.descSize & (this.descSize - 1)) !== 0 ||
      (is64 && this.descSize < 64)
    ) {
      throw bad(`descriptor size ${this.descSize}`);
    }
    this.descPerBlock = this.blockSize / this.descSize;
    this.gdtBlocks = Math.ceil(this.groups / this.descPerBlock);
    this.reservedGdt = dv.getUint16(0xce, true);
    this.metaBg = (incompat & INCOMPAT_META_BG) !== 0;
    this.firstMetaBg = this.metaBg ? dv.getUint32(0x104, true) : this.gdtBlocks;
    if (this.firstMetaBg > this.gdtBlocks) throw bad(`first meta_bg ${this.firstMetaBg}`);
    const oldGdt = Math.min(this.gdtBlocks, this.firstMetaBg);
    if (this.firstDataBlock + 1 + oldGdt > this.blocksCount)
      throw bad('group descriptors past the end');
    const logFlex = dv.getUint8(0x174);
    this.flexSize = incompat & INCOMPAT_FLEX_BG ? 2 ** Math.min(logFlex, 31) : 1;
    if (this.flexSize > MAX_FLEX_GROUP) throw bad(`flex group of ${this.flexSize} groups`);
    this.sparseSuper = (roCompat & RO_SPARSE_SUPER) !== 0;
    this.sparseSuper2 =
      compat & COMPAT_SPARSE_SUPER2
        ? [dv.getUint32(0x24c, true), dv.getUint32(0x250, true)]
        : undefined;
    const metadataCsum = (roCompat & RO_METADATA_CSUM) !== 0;
    this.uninitValid = metadataCsum || (roCompat & RO_GDT_CSUM) !== 0;
    if (metadataCsum) {
      this.csumSeed =
        incompat & INCOMPAT_CSUM_SEED
          ? dv.getUint32(0x270, true)
          : ~crc32c(sb.subarray(0x68, 0x78)) >>> 0;
    }
    const rev = dv.getUint32(0x4c, true);
    const inodeSize = rev === 0 ? 128 : dv.getUint16(0x58, true);
    if (inodeSize < 128 || inodeSize > this.blockSize || (inodeSize & (inodeSize - 1)) !== 0) {
      throw bad(`inode size ${inodeSize}`);
    }
    const inodesPerGroup = dv.getUint32(0x28, true);
    this.inodeTableBlocks = Math.ceil((inodesPerGroup * inodeSize) / this.blockSize);
    if (this.inodeTableBlocks > this.blocksPerGroup * this.flexSize) throw bad('inode table size');
  }

  async *free(from: number, to: number): AsyncIterable<Range> {
    const firstUnit = Math.max(
      Math.ceil(from / this.unitSize),
      Math.ceil(this.firstDataBlock / this.ratio),
    );
    const endUnit = Math.min(
      Math.floor(to / this.unitSize),
      Math.floor(this.blocksCount / this.ratio),
    );
    const firstDataUnit = this.firstDataBlock / this.ratio;
    let run: Range | undefined;
    let unit = firstUnit;
    while (unit < endUnit) {
      const group = Math.floor((unit - firstDataUnit) / this.unitsPerGroup);
      const groupStart = firstDataUnit + group * this.unitsPerGroup;
      const groupEnd = Math.min(endUnit, groupStart + this.unitsPerGroup);
      const bitmap = await this.bitmap(group);
      if (!bitmap) {
        if (run) yield run;
        run = undefined;
        unit = groupEnd;
        continue;
      }
      while (unit < groupEnd) {
        const bit = unit - groupStart;
        const byte = bitmap[bit >> 3]!;
        const whole = (bit & 7) === 0 && unit + 8 <= groupEnd;
        // Whole bytes of used or free units at once; single bits elsewhere.
        if (whole && byte === 0xff) {
          if (run) yield run;
          run = undefined;
          unit += 8;
          continue;
        }
        const n = whole && byte === 0 ? 8 : 1;
        if (n === 1 && byte & (1 << (bit & 7))) {
          if (run) yield run;
          run = undefined;
        } else if (run && run.end === unit * this.unitSize) {
          run.end += n * this.unitSize;
        } else {
          if (run) yield run;
          run = { start: unit * this.unitSize, end: (unit + n) * this.unitSize };
        }
        unit += n;
      }
    }
    if (run) yield run;
  }

  /** A group's block bitmap; undefined when it cannot be trusted (then nothing is dropped). */
  private bitmap(group: number): Promise<Uint8Array | undefined> {
    return this.bitmaps.get(group, async () => {
      try {
        const d = await this.descriptor(group);
        if (!d.valid) return undefined;
        if (this.uninitValid && d.flags & BG_BLOCK_UNINIT) return await this.uninitBitmap(group, d);
        if (d.blockBitmap < this.firstDataBlock || d.blockBitmap >= this.blocksCount)
          return undefined;
        const bitmap = await this.part.bytes(d.blockBitmap * this.blockSize, this.blockSize);
        if (this.csumSeed !== undefined && d.bitmapCsumBits !== 0) {
          const sum =
            ~crc32c(bitmap.subarray(0, this.unitsPerGroup / 8), ~this.csumSeed >>> 0) >>> 0;
          const mask = d.bitmapCsumBits === 32 ? 0xffffffff : 0xffff;
          if ((sum & mask) >>> 0 !== d.bitmapCsum) return undefined;
        }
        // Without checksums this is the one cross-check: a bitmap that disagrees with its
        // descriptor's free count is not trusted.
        if (countFree(bitmap, this.unitsIn(group)) !== d.freeCount) return undefined;
        return bitmap;
      } catch (err) {
        if (err instanceof CorruptImageError) return undefined;
        throw err;
      }
    });
  }

  /**
   * The bitmap the kernel would build for a BLOCK_UNINIT group: superblock and descriptor
   * backups, and the bitmaps and inode tables of this group's flex group that lie inside it.
   */
  private async uninitBitmap(group: number, own: Descriptor): Promise<Uint8Array | undefined> {
    const bitmap = new Uint8Array(this.unitsPerGroup / 8);
    const first = this.firstDataBlock + group * this.blocksPerGroup;
    const mark = (block: number, count = 1) => {
      for (
        let b = Math.max(block, first);
        b < Math.min(block + count, first + this.blocksPerGroup);
        b++
      ) {
        const bit = Math.floor((b - first) / this.ratio);
        bitmap[bit >> 3]! |= 1 << (bit & 7);
      }
    };
    const sb = this.hasSuper(group) ? 1 : 0;
    if (sb) mark(first, 1 + Math.min(this.gdtBlocks, this.firstMetaBg) + this.reservedGdt);
    const inMeta = group % this.descPerBlock;
    if (
      this.metaBg &&
      Math.floor(group / this.descPerBlock) >= this.firstMetaBg &&
      (inMeta === 0 || inMeta === 1 || inMeta === this.descPerBlock - 1)
    ) {
      mark(first + sb);
    }
    const flexFirst = group - (group % this.flexSize);
    for (let g = flexFirst; g < Math.min(this.groups, flexFirst + this.flexSize); g++) {
      const d = g === group ? own : await this.descriptor(g);
      if (!d.valid) return undefined;
      mark(d.blockBitmap);
      mark(d.inodeBitmap);
      mark(d.inodeTable, this.inodeTableBlocks);
    }
    return bitmap;
  }

  /** Allocation units in `group` (the last group may be short). */
  private unitsIn(group: number): number {
    const firstDataUnit = this.firstDataBlock / this.ratio;
    const total = Math.floor(this.blocksCount / this.ratio);
    return Math.min(this.unitsPerGroup, total - firstDataUnit - group * this.unitsPerGroup);
  }

  private hasSuper(group: number): boolean {
    if (group === 0) return true;
    if (this.sparseSuper2) return group === this.sparseSuper2[0] || group === this.sparseSuper2[1];
    if (group === 1 || !this.sparseSuper) return true;
    if (group % 2 === 0) return false;
    return isPower(group, 3) || isPower(group, 5) || isPower(group, 7);
  }

  private async descriptor(group: number): Promise<Descriptor> {
    if (group >= this.groups) throw new CorruptImageError(`ext: group ${group} out of range`);
    const index = Math.floor(group / this.descPerBlock);
    const block = await this.descBlocks.get(index, () =>
      this.part.bytes(this.descBlockNumber(index) * this.blockSize, this.blockSize),
    );
    const dv = view(block);
    const at = (group % this.descPerBlock) * this.descSize;
    const wide = this.descSize >= 64;
    const hi = (off: number) => (wide ? dv.getUint32(at + off, true) * 2 ** 32 : 0);
    return {
      blockBitmap: dv.getUint32(at, true) + hi(0x20),
      inodeBitmap: dv.getUint32(at + 4, true) + hi(0x24),
      inodeTable: dv.getUint32(at + 8, true) + hi(0x28),
      flags: dv.getUint16(at + 0x12, true),
      freeCount:
        dv.getUint16(at + 0x0c, true) + (wide ? dv.getUint16(at + 0x2c, true) * 0x10000 : 0),
      bitmapCsum:
        dv.getUint16(at + 0x18, true) + (wide ? dv.getUint16(at + 0x38, true) * 0x10000 : 0),
      bitmapCsumBits: this.csumSeed === undefined ? 0 : wide ? 32 : 16,
      valid: this.descriptorValid(group, block.subarray(at, at + this.descSize)),
    };
  }

  /** metadata_csum: crc32c over the group number and the descriptor, its checksum as zero. */
  private descriptorValid(group: number, d: Uint8Array): boolean {
    if (this.csumSeed === undefined) return true;
    const raw = (seed: number, bytes: Uint8Array) => ~crc32c(bytes, ~seed >>> 0) >>> 0;
    const le = new Uint8Array(4);
    view(le).setUint32(0, group, true);
    let sum = raw(this.csumSeed, le);
    sum = raw(sum, d.subarray(0, 0x1e));
    sum = raw(sum, new Uint8Array(2));
    sum = raw(sum, d.subarray(0x20));
    return (sum & 0xffff) === view(d).getUint16(0x1e, true);
  }

  /** Where descriptor block `index` lives: the classic table, or with meta_bg its own group. */
  private descBlockNumber(index: number): number {
    if (index < this.firstMetaBg) return this.firstDataBlock + 1 + index;
    const group = index * this.descPerBlock;
    let at = this.hasSuper(group) ? 1 : 0;
    if (this.blockSize === 1024 && index === 0 && this.firstDataBlock === 0) at++;
    return this.firstDataBlock + group * this.blocksPerGroup + at;
  }
}

function isPower(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}

/** ext2, ext3 (a journal) or ext4 (any ext4-only feature), as blkid names them. */
function extName(compat: number, incompat: number, roCompat: number): string {
  const ext4Incompat =
    0x40 | 0x80 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
  const ext4RoCompat = 0x8 | 0x10 | 0x20 | 0x40 | 0x200 | 0x400 | 0x2000 | 0x8000;
  if (incompat & ext4Incompat || roCompat & ext4RoCompat) return 'ext4';
  return compat & 0x4 ? 'ext3' : 'ext2';
}

/** Zero bits among the first `units` bits of a bitmap. */
function countFree(bitmap: Uint8Array, units: number): number {
  let used = 0;
  for (let bit = 0; bit < units; ) {
    const byte = bitmap[bit >> 3]!;
    if ((bit & 7) === 0 && bit + 8 <= units) {
      used += POPCOUNT[byte]!;
      bit += 8;
    } else {
      if (byte & (1 << (bit & 7))) used++;
      bit++;
    }
  }
  return units - used;
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, n) => {
  let c = 0;
  for (let x = n; x; x >>= 1) c += x & 1;
  return c;
});
