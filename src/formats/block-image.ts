/**
 * The shared engine of the block-table formats (VHD, VHDX, QED): a format only says how each
 * guest range is stored (`segments`), and this class reads, reports extents and builds the
 * qemu-img map view from that one answer, so the three always agree.
 */
import { CorruptImageError } from '../errors.js';
import { BaseImage, checkRange } from '../image/base.js';
import { capabilities } from '../image/capabilities.js';
import { mergeExtents, mergeMapEntries } from '../image/extents.js';
import type { ByteSource, Extent, Image, MapEntry } from '../image/types.js';
import { hostRuns } from './host-io.js';

/** How one run of guest bytes is stored. Offsets are guest offsets; `host` is a file offset. */
export type Segment =
  /**
   * Stored in this file at `host`. `sparse`: the host range may contain file holes that read as
   * zero (fixed disks preallocate the whole payload); extents and map look at the file then,
   * as qemu does for fixed VHD.
   */
  | { kind: 'data'; offset: number; length: number; host: number; sparse?: boolean }
  /** Reads as zero with no storage; `present`: this layer itself says so (qemu's "present"). */
  | { kind: 'zero'; offset: number; length: number; present: boolean }
  /** Not in this layer: the backing image's bytes, zero where there is none. */
  | { kind: 'lower'; offset: number; length: number };

/** How many host reads one `read` call keeps in flight. */
const READ_PARALLELISM = 8;

export abstract class BlockImage extends BaseImage {
  override readonly capabilities = capabilities({ extents: true });
  abstract readonly source: ByteSource;

  /**
   * Yields segments that exactly cover [offset, offset+length), in order. Called only with
   * ranges inside the image; implementations validate every table entry they use.
   */
  protected abstract segments(offset: number, length: number): AsyncIterable<Segment>;

  override get label(): string {
    return `${this.format} image ${this.source.name}`;
  }

  /** Segments, checked to be contiguous and covering (a format bug must not return garbage). */
  private async *checked(offset: number, length: number): AsyncIterable<Segment> {
    let next = offset;
    const end = offset + length;
    for await (const s of this.segments(offset, length)) {
      if (s.offset !== next || s.length <= 0 || s.offset + s.length > end) {
        throw new CorruptImageError(`${this.label}: inconsistent block map at offset ${next}`);
      }
      if (s.kind === 'data' && s.host + s.length > this.source.size) {
        throw new CorruptImageError(
          `${this.label}: data for guest offset ${s.offset} lies past the end of the file`,
        );
      }
      next += s.length;
      yield s;
    }
    if (next !== end) throw new CorruptImageError(`${this.label}: block map ends at ${next}`);
  }

  /** Closes the backing image (if any), then the file. */
  async close(): Promise<void> {
    try {
      await this.backing?.close();
    } finally {
      await this.source.close();
    }
  }

  protected async readAt(buf: Uint8Array, offset: number): Promise<void> {
    const pending = new Pending(READ_PARALLELISM);
    // Contiguous data segments become one host read (blocks laid out back to back).
    let run: { at: number; host: number; length: number } | undefined;
    const flush = async () => {
      if (!run) return;
      const { at, host, length } = run;
      run = undefined;
      await pending.add(this.readHost(buf.subarray(at, at + length), host));
    };
    try {
      for await (const s of this.checked(offset, buf.length)) {
        const at = s.offset - offset;
        if (s.kind === 'data') {
          if (run && run.at + run.length === at && run.host + run.length === s.host) {
            run.length += s.length;
            continue;
          }
          await flush();
          run = { at, host: s.host, length: s.length };
          continue;
        }
        await flush();
        if (s.kind === 'zero') buf.fill(0, at, at + s.length);
        else await pending.add(this.readLower(buf.subarray(at, at + s.length), s.offset));
      }
      await flush();
    } catch (err) {
      // Let reads already in flight finish before the caller may reuse the buffer.
      await pending.done().catch(() => {});
      throw err;
    }
    await pending.done();
  }

  private async readHost(buf: Uint8Array, host: number): Promise<void> {
    const n = await this.source.read(buf, host);
    if (n !== buf.length) {
      throw new CorruptImageError(`${this.label}: file ended at ${host + n} while reading data`);
    }
  }

  private async readLower(buf: Uint8Array, offset: number): Promise<void> {
    const lower = this.backing;
    const within = lower ? Math.max(0, Math.min(buf.length, lower.size - offset)) : 0;
    if (lower && within > 0) await lower.read(buf.subarray(0, within), offset);
    buf.fill(0, within);
  }

  protected override extentsAt(offset: number, length: number): AsyncIterable<Extent> {
    return mergeExtents(this.rawExtents(offset, length));
  }

  private async *rawExtents(offset: number, length: number): AsyncIterable<Extent> {
    for await (const s of this.checked(offset, length)) {
      if (s.kind === 'data') {
        for (const h of dataRuns(this.source, s)) {
          yield { offset: h.offset, length: h.length, zero: h.hole, hole: h.hole };
        }
      } else if (s.kind === 'zero') {
        yield { offset: s.offset, length: s.length, zero: true, hole: true };
      } else {
        const lower = this.backing;
        const within = lower ? Math.max(0, Math.min(s.length, lower.size - s.offset)) : 0;
        if (lower && within > 0) yield* lower.extents(s.offset, within);
        if (within < s.length) {
          yield { offset: s.offset + within, length: s.length - within, zero: true, hole: true };
        }
      }
    }
  }

  /**
   * qemu-img map entries for the range: what qemu's block status reports for this format,
   * following the backing chain (depth) exactly as `qemu-img map` does.
   */
  mapping(offset: number, length: number): AsyncIterable<MapEntry> {
    checkRange(offset, length, this.size, this.label);
    return mergeMapEntries(this.rawMapping(offset, length));
  }

  private async *rawMapping(offset: number, length: number): AsyncIterable<MapEntry> {
    if (length === 0) return;
    for await (const s of this.checked(offset, length)) {
      if (s.kind === 'data') {
        // qemu recurses into the file here: holes are zero yet still "data" at an offset.
        for (const h of dataRuns(this.source, s)) {
          const hostOffset = s.host + (h.offset - s.offset);
          const { offset: at, length: n, hole } = h;
          yield {
            offset: at,
            length: n,
            depth: 0,
            present: true,
            zero: hole,
            data: true,
            hostOffset,
          };
        }
      } else if (s.kind === 'zero') {
        const { offset: at, length: n, present } = s;
        yield { offset: at, length: n, depth: 0, present, zero: true, data: false };
      } else {
        yield* lowerMapping(this.backing, s.offset, s.length);
      }
    }
  }
}

/** Map entries of a range this layer leaves to its backing image (one level deeper). */
async function* lowerMapping(
  lower: Image | undefined,
  offset: number,
  length: number,
): AsyncIterable<MapEntry> {
  const within = lower ? Math.max(0, Math.min(length, lower.size - offset)) : 0;
  if (lower && within > 0) {
    if (lower.mapping) {
      for await (const e of lower.mapping(offset, within)) yield { ...e, depth: e.depth + 1 };
    } else {
      for await (const e of lower.extents(offset, within)) {
        yield { ...e, depth: 1, present: true, data: !e.zero };
      }
    }
  }
  // Unallocated and past the backing file's end (or no backing): qemu reports depth 0, absent.
  if (within < length) {
    yield {
      offset: offset + within,
      length: length - within,
      depth: 0,
      present: false,
      zero: true,
      data: false,
    };
  }
}

/**
 * A data segment's runs at guest offsets: a sparse segment split where the host file has
 * holes (they read as zeroes), any other as one data run.
 */
function* dataRuns(
  file: ByteSource,
  s: { offset: number; length: number; host: number; sparse?: boolean },
): Generator<{ offset: number; length: number; hole: boolean }> {
  if (!s.sparse) {
    yield { offset: s.offset, length: s.length, hole: false };
    return;
  }
  for (const h of hostRuns(file, s.host, s.length)) {
    yield { offset: s.offset + (h.offset - s.host), length: h.length, hole: h.hole };
  }
}

/** Keeps up to `limit` reads in flight and reports the first failure. */
class Pending {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly limit: number) {}

  async add(p: Promise<void>): Promise<void> {
    const tracked: Promise<void> = p.then(
      () => {
        this.inFlight.delete(tracked);
      },
      (error: unknown) => {
        this.inFlight.delete(tracked);
        this.failure ??= { error };
      },
    );
    this.inFlight.add(tracked);
    if (this.inFlight.size >= this.limit) await Promise.race(this.inFlight);
    if (this.failure) {
      await this.done();
    }
  }

  async done(): Promise<void> {
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure.error;
  }
}
