/**
 * XFS free space from the by-block-number free-space B+tree of each allocation group (AGF
 * bnobt), walked lazily for the range asked (keys down to a leaf, then right siblings) through
 * a small block cache. Only a filesystem whose internal log is clean is read; v5 superblock,
 * AGF and btree blocks must pass their CRCs. Facts from the XFS on-disk format documentation.
 */

import { CorruptImageError } from '../../errors.js';
import { checksumValid } from '../../formats/vhdx/crc32c.js';
import { view } from '../../io/bytes.js';
import { SingleFlightLru } from '../../io/single-flight-lru.js';
import { ascii, type PartReader, u64be } from './part-reader.js';
import type { FreeSpace, Range, Verdict } from './types.js';
import { xfsLogClean } from './xfs-log.js';

/** ftype, spinodes, meta_uuid, bigtime, nrext64 (needsrepair 0x10 is deliberately missing). */
const INCOMPAT_KNOWN = 0x1 | 0x2 | 0x4 | 0x8 | 0x20;
/** finobt, rmapbt, reflink, inobtcount. */
const RO_COMPAT_KNOWN = 0x1 | 0x2 | 0x4 | 0x8;
const NULL_BLOCK = 0xffffffff;
const MAX_LEVELS = 10;

export async function probeXfs(part: PartReader): Promise<Verdict | undefined> {
  if (part.length < 4096) return undefined;
  const sb = await part.bytes(0, 512);
  if (ascii(sb, 0, 4) !== 'XFSB') return undefined;
  const pass = (reason: string): Verdict => ({ kind: 'pass', filesystem: 'xfs', reason });
  const dv = view(sb);
  const blockSize = dv.getUint32(4);
  const sectSize = dv.getUint16(102);
  const version = dv.getUint16(100) & 0xf;
  const v5 = version === 5;
  if (version !== 4 && !v5) return pass(`superblock version ${version}`);
  if (![512, 1024, 2048, 4096, 8192, 16384, 32768].includes(sectSize)) return pass('sector size');
  if (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
    return pass(`block size ${blockSize}`);
  }
  const full = await part.bytes(0, sectSize);
  if (v5 && !checksumValid(full, 224)) return pass('superblock checksum mismatch');
  if (sb[126]) return pass('mkfs did not finish (sb_inprogress)');
  if (v5) {
    const incompat = dv.getUint32(216);
    if (incompat & 0x10) return pass('needs repair (needsrepair)');
    if (incompat & ~INCOMPAT_KNOWN)
      return pass(
        `unknown incompatible features 0x${((incompat & ~INCOMPAT_KNOWN) >>> 0).toString(16)}`,
      );
    if (dv.getUint32(212) & ~RO_COMPAT_KNOWN) return pass('unknown read-only features');
    if (dv.getUint32(220) !== 0) return pass('log incompatible features in use');
  }
  const dblocks = u64be(dv, 8);
  const agBlocks = dv.getUint32(84);
  const agCount = dv.getUint32(88);
  const agBlkLog = sb[124]!;
  const logStart = u64be(dv, 48);
  const logBlocks = dv.getUint32(96);
  if (dblocks * blockSize > part.length) return pass('the filesystem is larger than its partition');
  if (agBlocks === 0 || agCount === 0 || agBlkLog > 31 || agBlocks > 2 ** agBlkLog) {
    return pass('allocation group geometry');
  }
  if ((agCount - 1) * agBlocks >= dblocks || agCount * agBlocks < dblocks) {
    return pass('allocation group count');
  }
  if (logStart === 0) return pass('an external log (its state cannot be checked)');
  const logAg = Math.floor(logStart / 2 ** agBlkLog);
  const logAgBlock = logStart % 2 ** agBlkLog;
  const logOffset = (logAg * agBlocks + logAgBlock) * blockSize;
  const logLength = logBlocks * blockSize;
  if (logAg >= agCount || logOffset + logLength > dblocks * blockSize) return pass('log position');
  if (!(await xfsLogClean(part, logOffset, logLength)))
    return pass('the log is dirty (needs recovery)');
  return {
    kind: 'sparsify',
    filesystem: 'xfs',
    space: new XfsFreeSpace(part, { blockSize, sectSize, agBlocks, agCount, dblocks, v5 }),
  };
}

interface Geometry {
  blockSize: number;
  sectSize: number;
  agBlocks: number;
  agCount: number;
  dblocks: number;
  v5: boolean;
}

interface BtreeBlock {
  level: number;
  count: number;
  right: number;
  dv: DataView;
  header: number;
  maxRecs: number;
}

class XfsFreeSpace implements FreeSpace {
  private readonly roots = new SingleFlightLru<
    number,
    { root: number; levels: number; length: number } | undefined
  >(64);
  private readonly blocks = new SingleFlightLru<string, BtreeBlock>(32);

  constructor(
    private readonly part: PartReader,
    private readonly g: Geometry,
  ) {}

  async *free(from: number, to: number): AsyncIterable<Range> {
    const { blockSize, agBlocks } = this.g;
    const agBytes = agBlocks * blockSize;
    for (let ag = Math.floor(from / agBytes); ag < this.g.agCount && ag * agBytes < to; ag++) {
      const base = ag * agBytes;
      const first = Math.max(0, Math.ceil((from - base) / blockSize));
      const end = Math.min(agBlocks, Math.floor((to - base) / blockSize));
      if (first >= end) continue;
      try {
        for await (const [start, count] of this.extents(ag, first, end)) {
          const s = Math.max(start, first);
          const e = Math.min(start + count, end);
          if (s < e) yield { start: base + s * blockSize, end: base + e * blockSize };
        }
      } catch (err) {
        // A btree block that does not check out: the rest of this AG keeps its bytes.
        if (!(err instanceof CorruptImageError)) throw err;
      }
    }
  }

  /** Free extents [agbno, count] of one AG that end after `first`, until one starts at `end`. */
  private async *extents(ag: number, first: number, end: number): AsyncIterable<[number, number]> {
    const agf = await this.agf(ag);
    if (!agf) return;
    let block = agf.root;
    let level = agf.levels - 1;
    let b = await this.block(ag, block, level);
    while (b.level > 0) {
      // The last key whose start is at or before `first` (else the first child).
      let i = 0;
      while (i + 1 < b.count && b.dv.getUint32(b.header + (i + 1) * 8) <= first) i++;
      block = b.dv.getUint32(b.header + b.maxRecs * 8 + i * 4);
      level--;
      b = await this.block(ag, block, level);
    }
    let previousEnd = 0;
    for (let steps = 0; steps <= this.g.agBlocks; steps++) {
      for (let i = 0; i < b.count; i++) {
        const start = b.dv.getUint32(b.header + i * 8);
        const count = b.dv.getUint32(b.header + i * 8 + 4);
        if (start < previousEnd || count === 0 || start + count > agf.length) {
          throw new CorruptImageError(`xfs: AG ${ag} free-space records out of order`);
        }
        previousEnd = start + count;
        if (start >= end) return;
        if (start + count > first) yield [start, count];
      }
      if (b.right === NULL_BLOCK) return;
      b = await this.block(ag, b.right, 0);
    }
  }

  private agf(ag: number): Promise<{ root: number; levels: number; length: number } | undefined> {
    return this.roots.get(ag, async () => {
      const { agBlocks, blockSize, sectSize } = this.g;
      const sector = await this.part.bytes(ag * agBlocks * blockSize + sectSize, sectSize);
      const dv = view(sector);
      if (ascii(sector, 0, 4) !== 'XAGF' || dv.getUint32(8) !== ag) return undefined;
      if (this.g.v5 && !checksumValid(sector, 216)) return undefined;
      const length = dv.getUint32(12);
      const root = dv.getUint32(16);
      const levels = dv.getUint32(28);
      const agEnd = Math.min(agBlocks, this.g.dblocks - ag * agBlocks);
      if (length !== agEnd || root === 0 || root >= length || levels < 1 || levels > MAX_LEVELS)
        return undefined;
      return { root, levels, length };
    });
  }

  private block(ag: number, agbno: number, level: number): Promise<BtreeBlock> {
    return this.blocks.get(`${ag}:${agbno}`, async () => {
      const { agBlocks, blockSize, v5 } = this.g;
      if (agbno === 0 || agbno >= agBlocks)
        throw new CorruptImageError(`xfs: block ${agbno} outside AG ${ag}`);
      const buf = await this.part.bytes((ag * agBlocks + agbno) * blockSize, blockSize);
      const dv = view(buf);
      const magic = ascii(buf, 0, 4);
      if (magic !== (v5 ? 'AB3B' : 'ABTB') || (v5 && !checksumValid(buf, 52))) {
        throw new CorruptImageError(`xfs: AG ${ag} block ${agbno} is not a valid bnobt block`);
      }
      const header = v5 ? 56 : 16;
      const blockLevel = dv.getUint16(4);
      const count = dv.getUint16(6);
      const maxRecs =
        blockLevel === 0 ? (blockSize - header) / 8 : Math.floor((blockSize - header) / 12);
      if (blockLevel !== level || count > maxRecs) {
        throw new CorruptImageError(`xfs: AG ${ag} block ${agbno} has a bad level or count`);
      }
      return { level: blockLevel, count, right: dv.getUint32(12), dv, header, maxRecs };
    });
  }
}
