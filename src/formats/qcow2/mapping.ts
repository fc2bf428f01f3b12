/**
 * Guest offset → host location for one qcow2 layer: walks the L1 and L2 tables and yields
 * runs of one kind (qemu's qcow2_get_host_offset with its subcluster types). Reads, extents
 * and map all use this one primitive.
 */
import { CorruptImageError } from '../../errors.js';
import type { Qcow2Header } from './header.js';
import type { L1Table } from './l1-table.js';
import { capacityFor, TableCache } from './l2-cache.js';

export const Kind = {
  /** Allocated data at `host`. */
  Data: 0,
  /** A compressed cluster: `host` and `compressedSize` locate the compressed bytes. */
  Compressed: 1,
  /** Reads as zeroes, no host storage. */
  ZeroPlain: 2,
  /** Reads as zeroes, host storage preallocated at `host`. */
  ZeroAlloc: 3,
  /** Not allocated here: read from the backing image (or zeroes). */
  Unallocated: 4,
  /** Not allocated here, but the cluster has host storage (extended L2 subclusters). */
  UnallocatedAlloc: 5,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export interface Run {
  offset: number;
  length: number;
  kind: Kind;
  /** Host offset of `offset` for Data/ZeroAlloc/UnallocatedAlloc; compressed data start; else -1. */
  host: number;
  /** Compressed clusters: bytes of compressed data at `host` (sector padded); else 0. */
  compressedSize: number;
}

/** Memory budget of the L2 table cache of the image named by the user, and of each backing. */
export const L2_CACHE_BYTES = 16 * 1024 * 1024;
export const BACKING_L2_CACHE_BYTES = 4 * 1024 * 1024;
/**
 * Backings deeper than DEEP_BACKING_DEPTH get less, so the longest chain accepted (65 layers)
 * holds 16 + 8 × 4 + 56 × 1 = 104 MiB of L2 tables at most, within a 256 MiB RSS budget.
 */
export const DEEP_BACKING_L2_CACHE_BYTES = 1024 * 1024;
export const DEEP_BACKING_DEPTH = 8;

/** The L2 cache budget of a layer `depth` images below the one the user named. */
export function l2CacheBytesAt(depth: number): number {
  if (depth === 0) return L2_CACHE_BYTES;
  return depth <= DEEP_BACKING_DEPTH ? BACKING_L2_CACHE_BYTES : DEEP_BACKING_L2_CACHE_BYTES;
}
const TWO32 = 2 ** 32;
/** L2 entries decoded per step. */
const SLICE_CLUSTERS = 1024;

export function hasHost(kind: Kind): boolean {
  return kind === Kind.Data || kind === Kind.ZeroAlloc || kind === Kind.UnallocatedAlloc;
}

export class Qcow2Map {
  private readonly cs: number;
  private readonly l2Entries: number;
  private readonly coverage: number;
  private readonly l2: TableCache<DataView>;
  private readonly scSize: number;

  constructor(
    private readonly header: Qcow2Header,
    /** Read lazily, in pieces, through a cache shared by every open image. */
    readonly l1: L1Table,
    /** Current host file size (a getter: an image open for writing grows). */
    private readonly fileSize: () => number,
    /** True when data clusters live in an external data file (host = guest offset). */
    private readonly externalData: boolean,
    readCluster: (offset: number) => Promise<Uint8Array>,
    private readonly who: string,
    cacheBytes = L2_CACHE_BYTES,
  ) {
    this.cs = header.clusterSize;
    this.l2Entries = this.cs / (header.extendedL2 ? 16 : 8);
    this.coverage = this.cs * this.l2Entries;
    this.scSize = this.cs / 32;
    this.l2 = new TableCache(capacityFor(cacheBytes, this.cs), async (off) => {
      const t = await readCluster(off);
      return new DataView(t.buffer, t.byteOffset, t.byteLength);
    });
  }

  /**
   * Runs covering [offset, offset+length) in order; adjacent runs of one kind are merged when
   * their host offsets are contiguous, so one run is one host read.
   */
  async *runs(offset: number, length: number): AsyncGenerator<Run> {
    const end = offset + length;
    let pending: Run | undefined;
    let pos = offset;
    while (pos < end) {
      const l1i = Math.floor(pos / this.coverage);
      const base = l1i * this.coverage;
      const l2off = await this.l2Offset(l1i, pos);
      const batch: Run[] = [];
      let stop = Math.min(base + this.coverage, end);
      if (l2off === 0) {
        push(batch, run(pos, stop - pos, Kind.Unallocated, -1));
      } else {
        // Decode a slice of the table at a time: the batch stays small whatever the range.
        stop = Math.min(stop, pos - (pos % this.cs) + SLICE_CLUSTERS * this.cs);
        this.decode(await this.l2.get(l2off), base, pos, stop, batch);
      }
      for (const r of batch) {
        if (pending && mergeable(pending, r)) pending.length += r.length;
        else {
          if (pending) yield pending;
          pending = r;
        }
      }
      pos = stop;
    }
    if (pending) yield pending;
  }

  private async l2Offset(l1i: number, guest: number): Promise<number> {
    const [hi, lo] = await this.l1.entry(l1i);
    const off = entryOffset(hi, lo);
    if (off === 0) return 0;
    if (off % this.cs !== 0) {
      throw this.corrupt(guest, `L2 table offset ${off} is not cluster aligned`);
    }
    if (off + this.cs > this.fileSize()) {
      throw this.corrupt(guest, `L2 table at ${off} lies past the end of the file`);
    }
    return off;
  }

  /** Decodes the L2 entries of one table for guest range [from, to). */
  private decode(table: DataView, base: number, from: number, to: number, out: Run[]): void {
    const cs = this.cs;
    const ext = this.header.extendedL2;
    let i = Math.floor((from - base) / cs);
    for (let start = base + i * cs; start < to; start += cs, i++) {
      const a = Math.max(from, start);
      const b = Math.min(to, start + cs);
      const at = i * (ext ? 16 : 8);
      const hi = table.getUint32(at);
      const lo = table.getUint32(at + 4);
      if (hi & 0x40000000) {
        push(out, this.compressed(hi, lo, start, a, b));
        continue;
      }
      const host = entryOffset(hi, lo);
      // Offset 0 means unallocated, except in external data files, where the copied flag
      // tells a real cluster at host offset 0 apart (qemu's rule).
      const allocated = host !== 0 || (this.externalData && (hi & 0x80000000) !== 0);
      if (!ext) {
        let kind: Kind;
        if (lo & 1) {
          if (this.header.version < 3) throw this.corrupt(start, 'zero cluster in a v2 image');
          kind = host !== 0 ? Kind.ZeroAlloc : Kind.ZeroPlain;
        } else kind = allocated ? Kind.Data : Kind.Unallocated;
        if (hasHost(kind)) this.checkHost(host, start);
        push(out, run(a, b - a, kind, hasHost(kind) ? host + (a - start) : -1));
        continue;
      }
      const zeroBits = table.getUint32(at + 8);
      const allocBits = table.getUint32(at + 12);
      if (allocated ? (zeroBits & allocBits) !== 0 : allocBits !== 0) {
        throw this.corrupt(start, 'invalid subcluster allocation bitmap');
      }
      if (allocated) this.checkHost(host, start);
      const sc = this.scSize;
      for (let s = Math.floor((a - start) / sc); start + s * sc < b; s++) {
        const sa = Math.max(a, start + s * sc);
        const sb = Math.min(b, start + (s + 1) * sc);
        const bit = 1 << s;
        let kind: Kind;
        if (allocated) {
          kind =
            zeroBits & bit ? Kind.ZeroAlloc : allocBits & bit ? Kind.Data : Kind.UnallocatedAlloc;
        } else kind = zeroBits & bit ? Kind.ZeroPlain : Kind.Unallocated;
        push(out, run(sa, sb - sa, kind, allocated ? host + (sa - start) : -1));
      }
    }
  }

  private compressed(hi: number, lo: number, start: number, a: number, b: number): Run {
    if (this.externalData) {
      throw this.corrupt(start, 'compressed cluster in an image with an external data file');
    }
    // Offset field is x = 62 - (cluster_bits - 8) bits wide; the sector count follows it.
    const bits = this.header.clusterBits;
    const hiBits = 70 - bits - 32;
    const host = (hi & (2 ** hiBits - 1)) * TWO32 + (lo >>> 0);
    const sectors = ((hi >>> hiBits) & ((1 << (bits - 8)) - 1)) + 1;
    if (host >= this.fileSize()) {
      throw this.corrupt(start, `compressed cluster at ${host} lies past the end of the file`);
    }
    const r = run(a, b - a, Kind.Compressed, host);
    r.compressedSize = sectors * 512 - (host % 512);
    // Cut off by a truncation: found here, in guest order, before a later cluster that lies
    // wholly past the end (qemu counts whole sectors; only the last may run past the end).
    if (host + r.compressedSize - this.fileSize() >= 512) {
      // The reader's words for the same finding (compressed-reader.ts).
      throw new CorruptImageError(
        `${this.who}: compressed cluster for guest offset ${start} (${r.compressedSize} bytes at ${host}) runs past the end of the file`,
      );
    }
    return r;
  }

  private checkHost(host: number, guest: number): void {
    if (host % this.cs !== 0) {
      throw this.corrupt(guest, `cluster offset ${host} is not cluster aligned`);
    }
    if (host > Number.MAX_SAFE_INTEGER - this.cs) {
      throw this.corrupt(guest, `cluster offset ${host} is out of range`);
    }
    if (this.externalData && host !== guest) {
      throw this.corrupt(
        guest,
        `external data file cluster offset ${host} does not match the guest offset`,
      );
    }
  }

  private corrupt(guest: number, what: string): CorruptImageError {
    return new CorruptImageError(
      `${this.who}: corrupt qcow2 mapping at guest offset ${guest}: ${what}`,
    );
  }
}

/** Bits 9-55 of an L1/L2 entry given as big-endian 32-bit halves. */
function entryOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
}

function run(offset: number, length: number, kind: Kind, host: number): Run {
  return { offset, length, kind, host, compressedSize: 0 };
}

function mergeable(a: Run, b: Run): boolean {
  if (a.kind !== b.kind || a.offset + a.length !== b.offset) return false;
  if (a.kind === Kind.Compressed) return false;
  return !hasHost(a.kind) || a.host + a.length === b.host;
}

function push(out: Run[], r: Run): void {
  const last = out.at(-1);
  if (last && mergeable(last, r)) last.length += r.length;
  else out.push(r);
}
