/**
 * A qcow2 image (read-only): reads, extents and map of the whole backing chain, answered from
 * one mapping walk (mapping.ts). Semantics follow qemu: mapping() is `qemu-img map
 * --output=json`; extents are what qemu-nbd reports as NBD base:allocation (zero = reads as
 * zeroes; hole = no data, so zero clusters are holes even when preallocated).
 */
import { CorruptImageError } from '../../errors.js';
import { BaseImage, checkRange } from '../../image/base.js';
import { capabilities } from '../../image/capabilities.js';
import { entryOf, mergeExtents } from '../../image/extents.js';
import { RefusedFile } from '../../image/refused-file.js';
import type {
  ByteSource,
  Extent,
  FormatDetails,
  Image,
  MapEntry,
  SnapshotInfo,
} from '../../image/types.js';
import { LocalFile } from '../../io/file.js';
import type { CompressedReader } from './compressed-reader.js';
import {
  AUTOCLEAR_DATA_FILE_RAW,
  COMPAT_LAZY_REFCOUNTS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  type Qcow2Header,
} from './header.js';
import { Kind, type Qcow2Map, type Run } from './mapping.js';
import { Parallel } from './parallel.js';
import { detectMetadataPreallocation } from './refcount.js';
import type { BitmapInfo } from './snapshots.js';

/** Sub-reads of one request in flight at once (qemu uses 8 workers per request). */
const READ_PARALLELISM = 8;

export interface Qcow2Parts {
  source: ByteSource;
  /** Where data clusters live: `source`, or the external data file. */
  data: ByteSource;
  header: Qcow2Header;
  map: Qcow2Map;
  backing?: Image | undefined;
  snapshots: SnapshotInfo[];
  bitmaps?: BitmapInfo[] | undefined;
  actualSize?: number | undefined;
}

export class Qcow2Image extends BaseImage {
  readonly format = 'qcow2';
  override readonly capabilities = capabilities({ extents: true });
  readonly size: number;
  override readonly backing: Image | undefined;
  readonly header: Qcow2Header;
  readonly source: ByteSource;
  private readonly data: ByteSource;
  private readonly map: Qcow2Map;
  private compressedReader: CompressedReader | undefined;
  private recurse: Promise<boolean> | undefined;

  constructor(private readonly parts: Qcow2Parts) {
    super();
    this.source = parts.source;
    this.data = parts.data;
    this.header = parts.header;
    this.map = parts.map;
    this.backing = parts.backing;
    this.size = parts.header.size;
  }

  /** Made with the first compressed cluster: the codecs (zlib, zstd, the worker pool) load then. */
  private async compressed(): Promise<CompressedReader> {
    if (!this.compressedReader) {
      const { CompressedReader } = await import('./compressed-reader.js');
      this.compressedReader ??= new CompressedReader(this.source, this.header, this.source.name);
    }
    return this.compressedReader;
  }

  override get label(): string {
    return this.source.name;
  }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    const jobs = new Parallel(READ_PARALLELISM);
    let group: Run[] = [];
    const flushGroup = async () => {
      const g = group;
      group = [];
      if (g.length > 0) {
        const reader = this.compressedReader ?? (await this.compressed());
        await jobs.add(() => reader.read(g, buf, offset));
      }
    };
    try {
      for await (const r of this.map.runs(offset, buf.length)) {
        if (r.kind === Kind.Compressed) {
          if (!(this.compressedReader ?? (await this.compressed())).fits(group, r))
            await flushGroup();
          group.push(r);
          continue;
        }
        await flushGroup();
        const dst = buf.subarray(r.offset - offset, r.offset - offset + r.length);
        switch (r.kind) {
          case Kind.Data:
            await jobs.add(() => this.readHost(dst, r));
            break;
          case Kind.ZeroPlain:
          case Kind.ZeroAlloc:
            dst.fill(0);
            break;
          default:
            await jobs.add(() => this.readBelow(dst, r.offset));
        }
      }
      await flushGroup();
    } catch (err) {
      await jobs.settle();
      throw err;
    }
    await jobs.done();
  }

  private async readHost(dst: Uint8Array, r: Run): Promise<void> {
    const n = await this.data.read(dst, r.host);
    if (n === dst.length) return;
    if (r.host >= this.data.size) {
      const file = this.data === this.source ? 'the file' : `data file ${this.data.name}`;
      throw new CorruptImageError(
        `${this.label}: data for guest offset ${r.offset} is at host offset ${r.host}, past the end of ${file}`,
      );
    }
    // A last cluster written only in part: qemu reads the rest as zeroes.
    dst.fill(0, n);
  }

  /** Bytes this layer does not allocate: the backing image's, zeroes beyond its end. */
  private async readBelow(dst: Uint8Array, guest: number): Promise<void> {
    const below = this.backing ? Math.max(0, Math.min(dst.length, this.backing.size - guest)) : 0;
    if (below > 0) await this.backing!.read(dst.subarray(0, below), guest);
    dst.fill(0, below);
  }

  protected override extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    return mergeExtents(toExtents(this.layerMapping(offset, length)));
  }

  /** `qemu-img map --output=json` entries for [offset, offset+length) (unmerged). */
  async *mapping(offset: number, length: number): AsyncIterable<MapEntry> {
    checkRange(offset, length, this.size, this.label);
    if (length > 0) yield* this.layerMapping(offset, length);
  }

  private async *layerMapping(offset: number, length: number): AsyncGenerator<MapEntry> {
    for await (const r of this.map.runs(offset, length)) {
      const at = { offset: r.offset, length: r.length, depth: 0 };
      switch (r.kind) {
        case Kind.Data:
          if (await this.recurseIntoHost()) yield* this.hostSplit(r);
          else yield { ...at, present: true, zero: false, data: true, hostOffset: r.host };
          break;
        case Kind.Compressed:
          yield { ...at, present: true, zero: false, data: true, compressed: true };
          break;
        case Kind.ZeroPlain:
          yield { ...at, present: true, zero: true, data: false };
          break;
        case Kind.ZeroAlloc:
          yield { ...at, present: true, zero: true, data: false, hostOffset: r.host };
          break;
        default:
          yield* this.mappingBelow(r);
      }
    }
  }

  /**
   * Unallocated here: the backing image answers up to its end; beyond it (or with no backing)
   * this layer reports zeroes, keeping a preallocated host offset as qemu does.
   */
  private async *mappingBelow(r: Run): AsyncGenerator<MapEntry> {
    const end = r.offset + r.length;
    const b = this.backing;
    const split = b ? Math.min(end, Math.max(r.offset, b.size)) : r.offset;
    if (b && split > r.offset) yield* backingMapping(b, r.offset, split - r.offset);
    if (split < end) {
      const e: MapEntry = {
        offset: split,
        length: end - split,
        depth: 0,
        present: false,
        zero: true,
        data: false,
      };
      if (r.kind === Kind.UnallocatedAlloc) e.hostOffset = r.host + (split - r.offset);
      yield e;
    }
  }

  private recurseIntoHost(): Promise<boolean> {
    this.recurse ??=
      this.data instanceof LocalFile
        ? detectMetadataPreallocation(this.source, this.header)
        : Promise.resolve(false);
    return this.recurse;
  }

  /** A data run split where the host file has holes or ends (those read as zeroes). */
  private *hostSplit(r: Run): Generator<MapEntry> {
    for (const h of (this.data as LocalFile).runs(r.host, r.length)) {
      yield {
        offset: r.offset + (h.offset - r.host),
        length: h.length,
        depth: 0,
        present: true,
        zero: h.hole,
        data: true,
        hostOffset: h.offset,
      };
    }
  }

  describe(): FormatDetails {
    const h = this.header;
    const d: FormatDetails = {
      format: 'qcow2',
      virtualSize: h.size,
      clusterSize: h.clusterSize,
      encrypted: false,
      dirty: (h.incompatible & INCOMPAT_DIRTY) !== 0n,
      corrupt: (h.incompatible & INCOMPAT_CORRUPT) !== 0n,
      specific: this.specific(),
    };
    if (this.parts.actualSize !== undefined) d.actualSize = this.parts.actualSize;
    if (h.backingFile !== undefined) {
      d.backingFilename = h.backingFile;
      d.fullBackingFilename = combinePath(this.source.path, h.backingFile);
    }
    if (h.backingFormat !== undefined) d.backingFormat = h.backingFormat;
    if (h.dataFile !== undefined) d.dataFile = h.dataFile;
    if (this.data instanceof RefusedFile) d.refusedFiles = [this.data.reason];
    if (this.parts.snapshots.length > 0) d.snapshots = this.parts.snapshots;
    return d;
  }

  /** qemu-img info's "format-specific" data for qcow2, with qemu's key names. */
  private specific(): Record<string, unknown> {
    const h = this.header;
    const s: Record<string, unknown> = {
      compat: h.version === 2 ? '0.10' : '1.1',
      'compression-type': h.compressionType,
    };
    if (h.version === 3) {
      s['lazy-refcounts'] = (h.compatible & COMPAT_LAZY_REFCOUNTS) !== 0n;
      if (this.parts.bitmaps) s.bitmaps = this.parts.bitmaps;
    }
    s['refcount-bits'] = 2 ** h.refcountOrder;
    if (h.version === 3) {
      if (h.dataFile !== undefined) {
        s['data-file'] = h.dataFile;
        s['data-file-raw'] = (h.autoclear & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
      }
      s.corrupt = (h.incompatible & INCOMPAT_CORRUPT) !== 0n;
      s['extended-l2'] = h.extendedL2;
    }
    return s;
  }

  async close(): Promise<void> {
    this.compressedReader?.clear();
    this.map.l1.release();
    const closing: Promise<void>[] = [];
    if (this.backing) closing.push(this.backing.close());
    if (this.data !== this.source) closing.push(this.data.close());
    closing.push(this.source.close());
    const results = await Promise.allSettled(closing);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

/** The backing image's map entries, one layer deeper. */
async function* backingMapping(b: Image, offset: number, length: number): AsyncGenerator<MapEntry> {
  if (b.mapping) {
    for await (const e of b.mapping(offset, length)) yield { ...e, depth: e.depth + 1 };
    return;
  }
  for await (const e of b.extents(offset, length)) {
    yield entryOf(e, { depth: 1, present: true, data: !e.hole });
  }
}

async function* toExtents(entries: AsyncIterable<MapEntry>): AsyncGenerator<Extent> {
  for await (const e of entries) {
    yield { offset: e.offset, length: e.length, zero: e.zero, hole: !e.data };
  }
}

/** qemu's path_combine: a relative reference is taken from the referrer's directory. */
function combinePath(referrer: string | undefined, ref: string): string {
  if (ref.startsWith('/') || referrer === undefined) return ref;
  const slash = referrer.lastIndexOf('/');
  return slash < 0 ? ref : referrer.slice(0, slash + 1) + ref;
}
