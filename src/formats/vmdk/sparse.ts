/**
 * A hosted sparse extent ('KDMV'): a grain directory points at grain tables, whose entries
 * point at grains (0: unallocated, 1: zero grain, else the grain's sector). In a
 * stream-optimized extent each grain is a marker {lba, size} followed by deflated data, and
 * the directory may live in a footer at the end of the file.
 */

import { acquireShared, allSettledOrThrow, releaseShared } from '../../codec/shared-buffers.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { readExact } from '../host-io.js';
import { MAX_DESCRIPTOR_BYTES } from './descriptor.js';
import type { FillUnallocated, Run, VmdkExtent } from './extent.js';
import {
  FLAG_MARKERS,
  GTE_ZERO,
  gdEntries,
  isCompressed,
  MARKER_EOS,
  MARKER_FOOTER,
  MAX_GD_ENTRIES,
  parseMarker,
  parseSparseHeader,
  SECTOR,
  type SparseHeader,
} from './header.js';
import { type GrainJob, inflateGrains } from './inflate.js';

/** Grain marker: u64 lba + u32 compressed size, then the data. */
const GRAIN_MARKER_BYTES = 12;
/** Grain tables kept in memory per image (each is 2 KiB with 512 entries). */
const TABLE_CACHE_BYTES = 4 << 20;
/** Inflated grains kept per image for reads that cut through a grain (unaligned readers). */
const GRAIN_CACHE_BYTES = 4 << 20;
/** Most compressed bytes one coalesced read may cover. */
const MAX_SPAN_BYTES = 8 << 20;

function decodeU32s(bytes: Uint8Array): Uint32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out = new Uint32Array(bytes.length >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

/** One grain's share of a read: `length` bytes at `inGrain`, for buf[bufOffset...]. */
interface Piece {
  grain: number;
  inGrain: number;
  length: number;
  bufOffset: number;
  gte: number;
}

/**
 * What the sparse extents of one image may hold in memory together: grain directories (read
 * whole at open) and a share of the caches each. A descriptor may list thousands of extents,
 * even one file many times, so per-extent limits alone would not bound the image.
 */
export class ExtentBudget {
  private directoryLeft = MAX_GD_ENTRIES;
  /** Fraction of the table and grain caches one extent gets. */
  readonly share: number;

  constructor(sparseExtents = 1) {
    this.share = 1 / Math.max(1, sparseExtents);
  }

  takeDirectory(entries: number, who: string): void {
    if (entries > this.directoryLeft) {
      throw new UnsupportedFeatureError(
        `${who}: the image's grain directories hold more than ${MAX_GD_ENTRIES} entries together`,
      );
    }
    this.directoryLeft -= entries;
  }
}

export class SparseExtent implements VmdkExtent {
  readonly size: number;
  readonly clusterSize: number;
  readonly compressed: boolean;
  private readonly grainBytes: number;
  private readonly tableBytes: number;
  private readonly tables = new Map<number, Promise<Uint32Array>>();
  private readonly maxTables: number;
  private readonly grains = new Map<number, Uint8Array>();
  private grainCacheBytes = 0;
  private readonly maxGrainCacheBytes: number;

  private constructor(
    readonly type: string,
    readonly file: ByteSource,
    readonly header: SparseHeader,
    private readonly gd: Uint32Array,
    limit: number,
    share: number,
  ) {
    this.grainBytes = header.grainSectors * SECTOR;
    this.clusterSize = this.grainBytes;
    this.compressed = isCompressed(header);
    this.size = Math.min(header.capacity * SECTOR, limit);
    this.tableBytes = header.gtesPerGt * 4;
    this.maxTables = Math.max(4, Math.floor((TABLE_CACHE_BYTES * share) / this.tableBytes));
    this.maxGrainCacheBytes = GRAIN_CACHE_BYTES * share;
  }

  /**
   * Opens and checks a sparse extent file; `type` is '' (monolithic) or 'SPARSE'. A descriptor
   * may give the extent fewer sectors than its capacity (`limit`, bytes), never more.
   */
  static async open(
    file: ByteSource,
    type: string,
    limit = Infinity,
    budget = new ExtentBudget(),
  ): Promise<SparseExtent> {
    if (file.size < SECTOR) {
      throw new CorruptImageError(`${file.name}: file is too small for a VMDK header`);
    }
    let header = parseSparseHeader(await readExact(file, new Uint8Array(SECTOR), 0, 'header'));
    if (header.gdOffset === undefined) header = await readFooter(file);
    const compressed = isCompressed(header);
    if (compressed && (header.flags & FLAG_MARKERS) === 0) {
      throw new UnsupportedFeatureError(
        `${file.name}: compressed VMDK grains without grain markers are not supported`,
      );
    }
    if (header.overhead * SECTOR > file.size) {
      throw new CorruptImageError(
        `${file.name}: file truncated, expecting at least ${header.overhead * SECTOR} bytes`,
      );
    }
    const entries = gdEntries(header);
    budget.takeDirectory(entries, file.name);
    const gdOffset = header.gdOffset! * SECTOR;
    if (entries > 0 && (gdOffset < SECTOR || gdOffset + entries * 4 > file.size)) {
      throw new CorruptImageError(
        `${file.name}: grain directory at sector ${header.gdOffset} is outside the file`,
      );
    }
    const gd = decodeU32s(
      await readExact(file, new Uint8Array(entries * 4), gdOffset, 'the grain directory'),
    );
    const tableBytes = header.gtesPerGt * 4;
    for (let i = 0; i < gd.length; i++) {
      const sector = gd[i]!;
      if (sector !== 0 && sector * SECTOR + tableBytes > file.size) {
        throw new CorruptImageError(
          `${file.name}: grain table ${i} at sector ${sector} is past the end of the file`,
        );
      }
    }
    checkDistinctTables(gd, Math.ceil(tableBytes / SECTOR), file.name);
    if (header.capacity * SECTOR < limit && limit !== Infinity) {
      throw new CorruptImageError(
        `${file.name}: sparse extent holds ${header.capacity} sectors, the descriptor says ${limit / SECTOR}`,
      );
    }
    return new SparseExtent(type, file, header, gd, limit, budget.share);
  }

  /** The embedded descriptor's bytes (empty when there is none). */
  async descriptorBytes(): Promise<Uint8Array> {
    const { descriptorOffset, descriptorSize } = this.header;
    if (descriptorOffset === 0 || descriptorSize === 0) return new Uint8Array(0);
    const start = descriptorOffset * SECTOR;
    const length = Math.min(descriptorSize * SECTOR, MAX_DESCRIPTOR_BYTES);
    if (start + length > this.file.size) {
      throw new CorruptImageError(`${this.file.name}: embedded descriptor is past the end of file`);
    }
    return readExact(this.file, new Uint8Array(length), start, 'the embedded descriptor');
  }

  private table(sector: number): Promise<Uint32Array> {
    const hit = this.tables.get(sector);
    if (hit) {
      this.tables.delete(sector);
      this.tables.set(sector, hit);
      return hit;
    }
    const load = readExact(
      this.file,
      new Uint8Array(this.tableBytes),
      sector * SECTOR,
      'a grain table',
    ).then(decodeU32s);
    load.catch(() => this.tables.delete(sector));
    this.tables.set(sector, load);
    if (this.tables.size > this.maxTables) {
      this.tables.delete(this.tables.keys().next().value!);
    }
    return load;
  }

  /** Calls `visit` with each grain's table entry in [first, last), skipping absent tables. */
  private async eachGrain(
    first: number,
    last: number,
    visit: (grain: number, gte: number, count: number) => void,
  ): Promise<void> {
    const perTable = this.header.gtesPerGt;
    let g = first;
    while (g < last) {
      const t = Math.floor(g / perTable);
      const tableEnd = Math.min((t + 1) * perTable, last);
      const sector = this.gd[t]!;
      if (sector === 0) {
        visit(g, 0, tableEnd - g);
        g = tableEnd;
        continue;
      }
      const table = await this.table(sector);
      for (; g < tableEnd; g++) visit(g, table[g % perTable]!, 1);
    }
  }

  /** Bytes of grain `g` inside the extent (the last grain may be cut by the capacity). */
  private grainLength(g: number): number {
    return Math.min(this.grainBytes, this.size - g * this.grainBytes);
  }

  /** Checks a data grain's entry against the file before anything reads it. */
  private checkGrain(g: number, gte: number): void {
    const host = gte * SECTOR;
    const need = this.compressed ? GRAIN_MARKER_BYTES : this.grainLength(g);
    if (host + need > this.file.size) {
      throw new CorruptImageError(
        `${this.file.name}: grain ${g} at sector ${gte} is past the end of the file`,
      );
    }
  }

  async *runs(offset: number, length: number): AsyncIterable<Run> {
    const first = Math.floor(offset / this.grainBytes);
    const last = Math.ceil((offset + length) / this.grainBytes);
    const out: Run[] = [];
    let pending: Run | undefined;
    const push = (r: Run) => {
      if (pending && canMerge(pending, r)) {
        pending.length += r.length;
        return;
      }
      if (pending) out.push(pending);
      pending = r;
    };
    // Walk one grain table at a time so memory stays bounded on huge ranges.
    const perTable = this.header.gtesPerGt;
    for (let g = first; g < last; ) {
      const stop = Math.min(last, (Math.floor(g / perTable) + 1) * perTable);
      await this.eachGrain(g, stop, (grain, gte, count) => push(this.runOf(grain, gte, count)));
      g = stop;
      yield* out;
      out.length = 0;
    }
    if (pending) yield pending;
  }

  private runOf(g: number, gte: number, count: number): Run {
    const offset = g * this.grainBytes;
    const length = Math.min(count * this.grainBytes, this.size - offset);
    if (gte === 0) return { offset, length, kind: 'unallocated' };
    if (gte === GTE_ZERO) return { offset, length, kind: 'zero' };
    this.checkGrain(g, gte);
    if (this.compressed) return { offset, length, kind: 'data', compressed: true };
    return { offset, length, kind: 'data', hostOffset: gte * SECTOR };
  }

  async read(buf: Uint8Array, offset: number, fill: FillUnallocated): Promise<void> {
    const end = offset + buf.length;
    const pieces: Piece[] = [];
    await this.eachGrain(
      Math.floor(offset / this.grainBytes),
      Math.ceil(end / this.grainBytes),
      (grain, gte, count) => {
        const from = Math.max(offset, grain * this.grainBytes);
        const to = Math.min(end, (grain + count) * this.grainBytes);
        if (gte > GTE_ZERO) this.checkGrain(grain, gte);
        pieces.push({
          grain,
          inGrain: from - grain * this.grainBytes,
          length: to - from,
          bufOffset: from - offset,
          gte,
        });
      },
    );
    const tasks: Promise<void>[] = [];
    for (let i = 0; i < pieces.length; ) {
      const p = pieces[i]!;
      let j = i + 1;
      if (p.gte === 0 || p.gte === GTE_ZERO) {
        while (j < pieces.length && pieces[j]!.gte === p.gte) j++;
        const to = pieces[j - 1]!.bufOffset + pieces[j - 1]!.length;
        const part = buf.subarray(p.bufOffset, to);
        if (p.gte === GTE_ZERO) part.fill(0);
        else tasks.push(fill(part, offset + p.bufOffset));
      } else if (!this.compressed) {
        // Coalesce grains that sit back to back in the file into one read.
        while (j < pieces.length && adjacentOnHost(pieces[j - 1]!, pieces[j]!)) j++;
        const to = pieces[j - 1]!.bufOffset + pieces[j - 1]!.length;
        const host = p.gte * SECTOR + p.inGrain;
        const part = buf.subarray(p.bufOffset, to);
        tasks.push(readExact(this.file, part, host, 'grain data').then(() => {}));
      } else {
        const group: Piece[] = [];
        for (j = i; j < pieces.length && pieces[j]!.gte > GTE_ZERO; j++) {
          const q = pieces[j]!;
          if (this.fromCache(q, buf)) continue;
          if (group.length > 0 && !sameSpan(group[0]!, group.at(-1)!, q, this.grainBytes)) break;
          group.push(q);
        }
        if (group.length > 0) tasks.push(this.readCompressed(group, buf));
      }
      i = j;
    }
    await Promise.all(tasks);
  }

  private fromCache(p: Piece, buf: Uint8Array): boolean {
    const grain = this.grains.get(p.grain);
    if (!grain) return false;
    buf.set(grain.subarray(p.inGrain, p.inGrain + p.length), p.bufOffset);
    return true;
  }

  /**
   * Reads a run of compressed grains with one read (into shared memory) and inflates them as
   * one batch of the decompression engine: whole grains straight into `buf`, grains read only
   * in part into their own buffers (then cached).
   */
  private async readCompressed(group: Piece[], buf: Uint8Array): Promise<void> {
    const first = group[0]!.gte * SECTOR;
    const lastHost = group.at(-1)!.gte * SECTOR;
    // Enough for the last grain's record in all but pathological cases; more is read on demand.
    const guess = GRAIN_MARKER_BYTES + this.grainBytes + (this.grainBytes >>> 3) + SECTOR;
    const spanEnd = Math.min(this.file.size, lastHost + guess);
    const span = acquireShared(spanEnd - first);
    try {
      const n = await this.file.read(span, first);
      // Every grain is located (and checked) before any decode starts.
      const located = [];
      for (const p of group) {
        const where = `${this.file.name}: grain ${p.grain} at sector ${p.gte}`;
        const at = p.gte * SECTOR - first;
        located.push({ p, where, loc: await this.locate(p, span.subarray(0, n), at, where) });
      }
      const direct: GrainJob[] = [];
      const tasks: Promise<void>[] = [];
      for (const { p, where, loc } of located) {
        const whole = p.inGrain === 0 && p.length === this.grainBytes;
        if (whole && loc.inSpan) {
          direct.push({ at: loc.at, size: loc.size, to: p.bufOffset, where });
        } else {
          tasks.push(
            this.inflatePart(p, loc.inSpan ? span : loc.data, loc.at, loc.size, where, buf),
          );
        }
      }
      if (direct.length > 0)
        tasks.push(inflateGrains(span, direct, buf, this.grainBytes).then(() => {}));
      // Every decode settles before the span goes back to the pool.
      await allSettledOrThrow(tasks);
    } finally {
      releaseShared(span);
    }
  }

  /** A grain read only in part (or whose data lies beyond the span): own buffer, then cache. */
  private async inflatePart(
    p: Piece,
    src: Uint8Array,
    at: number,
    size: number,
    where: string,
    buf: Uint8Array,
  ): Promise<void> {
    const out = new Uint8Array(this.grainBytes);
    const need = p.inGrain + p.length;
    const n = await inflateGrains(src, [{ at, size, to: 0, where }], out, this.grainBytes, need);
    const grain = out.subarray(0, n);
    buf.set(grain.subarray(p.inGrain, need), p.bufOffset);
    if (need < grain.length || p.inGrain > 0) this.remember(p.grain, grain);
  }

  /** Where grain `p`'s compressed bytes are: in the span at `at`, or read into `data`. */
  private async locate(
    p: Piece,
    span: Uint8Array,
    at: number,
    where: string,
  ): Promise<{ inSpan: boolean; at: number; size: number; data: Uint8Array }> {
    const host = p.gte * SECTOR;
    let marker = span.subarray(at, at + GRAIN_MARKER_BYTES);
    if (marker.length < GRAIN_MARKER_BYTES) {
      marker = await readExact(this.file, new Uint8Array(GRAIN_MARKER_BYTES), host, where);
    }
    const size = new DataView(marker.buffer, marker.byteOffset, 12).getUint32(8, true);
    // qemu reads at most two grains' worth of compressed bytes; more is not a real grain.
    if (size === 0 || size > 2 * this.grainBytes) {
      throw new CorruptImageError(`${where}: invalid compressed size ${size}`);
    }
    const dataAt = host + GRAIN_MARKER_BYTES;
    if (dataAt + size > this.file.size) {
      throw new CorruptImageError(`${where}: compressed data runs past the end of the file`);
    }
    if (at + GRAIN_MARKER_BYTES + size <= span.length) {
      return { inSpan: true, at: at + GRAIN_MARKER_BYTES, size, data: span };
    }
    const data = await readExact(this.file, new Uint8Array(size), dataAt, where);
    return { inSpan: false, at: 0, size, data };
  }

  private remember(g: number, grain: Uint8Array): void {
    if (grain.length > this.maxGrainCacheBytes / 4 || this.grains.has(g)) return;
    this.grains.set(g, grain);
    this.grainCacheBytes += grain.length;
    while (this.grainCacheBytes > this.maxGrainCacheBytes) {
      const [oldest, data] = this.grains.entries().next().value!;
      this.grains.delete(oldest);
      this.grainCacheBytes -= data.length;
    }
  }
}

/**
 * Directory entries must point at distinct, non-overlapping grain tables: one table shared by
 * millions of entries lets a small file claim terabytes of grains to walk.
 */
function checkDistinctTables(gd: Uint32Array, tableSectors: number, who: string): void {
  const used = gd.filter((sector) => sector !== 0).sort();
  for (let i = 1; i < used.length; i++) {
    const [a, b] = [used[i - 1]!, used[i]!];
    if (b - a < tableSectors) {
      const what =
        a === b
          ? `two directory entries point at the grain table at sector ${a}`
          : `grain tables at sectors ${a} and ${b} overlap`;
      throw new CorruptImageError(`${who}: ${what} (cross-linked grain directory)`);
    }
  }
}

function canMerge(a: Run, b: Run): boolean {
  if (a.kind !== b.kind || a.offset + a.length !== b.offset) return false;
  if (a.kind !== 'data') return true;
  if (a.compressed || b.compressed) return a.compressed === b.compressed;
  return a.hostOffset! + a.length === b.hostOffset;
}

function adjacentOnHost(a: Piece, b: Piece): boolean {
  return (
    b.gte > GTE_ZERO && b.inGrain === 0 && a.gte * SECTOR + a.inGrain + a.length === b.gte * SECTOR
  );
}

/** Whether compressed grain `q` can join a coalesced read spanning first..last. */
function sameSpan(first: Piece, last: Piece, q: Piece, grainBytes: number): boolean {
  const host = q.gte * SECTOR;
  const lastHost = last.gte * SECTOR;
  return (
    host > lastHost &&
    host - lastHost <= 2 * grainBytes + 2 * SECTOR &&
    host - first.gte * SECTOR <= MAX_SPAN_BYTES
  );
}

/** Reads the footer copy of the header that a stream-optimized file has at its end. */
async function readFooter(file: ByteSource): Promise<SparseHeader> {
  const end = Math.floor(file.size / SECTOR) * SECTOR;
  if (end < 4 * SECTOR) {
    throw new CorruptImageError(`${file.name}: too small for a stream-optimized footer`);
  }
  const buf = await readExact(file, new Uint8Array(3 * SECTOR), end - 3 * SECTOR, 'the footer');
  const footer = parseMarker(buf);
  const eos = parseMarker(buf.subarray(2 * SECTOR));
  if (
    footer.size !== 0 ||
    footer.type !== MARKER_FOOTER ||
    eos.value !== 0 ||
    eos.size !== 0 ||
    eos.type !== MARKER_EOS
  ) {
    throw new CorruptImageError(`${file.name}: invalid stream-optimized footer`);
  }
  const header = parseSparseHeader(buf.subarray(SECTOR, 2 * SECTOR));
  if (header.gdOffset === undefined) {
    throw new CorruptImageError(`${file.name}: footer does not locate the grain directory`);
  }
  return header;
}
