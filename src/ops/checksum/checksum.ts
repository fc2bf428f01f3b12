/**
 * blkhash of an Image or of a byte stream. Images are walked by extents: zero extents are
 * never read (each full zero block adds Z), data is read in large aligned windows with several
 * in flight while the worker pool hashes earlier ones.
 */
import { CorruptImageError, UsageError } from '../../errors.js';
import type { Extent, Image, ProgressListener } from '../../image/types.js';
import { throwIfAborted } from '../../io/abort.js';
import { isNativeEnabled } from '../../io/native.js';
import { type ReadLease, takeReadLease } from '../../io/read-lease.js';
import { isZeroChunk } from '../../sources/sequential.js';
import { intOption } from '../copy/options.js';
import { type BlkHashOptions, BlockDigester } from './blkhash.js';
import { type DirectRun, type DirectSource, directSource } from './direct-runs.js';
import { OrderedBlkHash } from './ordered.js';
import {
  type BlockHasher,
  HashPool,
  InlineHasher,
  JOBS_PER_WORKER,
  sharedHashPool,
} from './pool.js';

export const DEFAULT_WINDOW_SIZE = 4 * 1024 * 1024;
export const MAX_WINDOW_SIZE = 256 * 1024 * 1024;
/** Default cap on windows in flight: 4 MiB × 10 bounds memory at 40 MiB on any machine. */
export const MAX_DEFAULT_IN_FLIGHT = 10;

export interface ChecksumOptions extends BlkHashOptions {
  /** Bytes per read request and hashing job (default 4 MiB; rounded up to whole blocks). */
  windowSize?: number;
  /**
   * Windows read or hashed at once (default: two per hashing thread, queued in the worker,
   * plus two being read; at most 10). Memory ≈ windowSize × inFlight.
   */
  inFlight?: number;
  /** Hashing threads: 0 hashes on the calling thread; default the shared pool (one per core, ≤ 8). */
  threads?: number;
  /** A hasher to use instead (the caller's own BlockHasher); not closed here. */
  hasher?: BlockHasher;
  /** Phase `checksum`: bytes accounted for, in order (total undefined for streams). */
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /**
   * Hash local file ranges through a mapping of the file instead of reading them (no read copy;
   * about a quarter less CPU). The file is mapped only under a read lease, so a truncation
   * by another program waits for the mapped windows and then reads as a clean error; the lease
   * needs a SIGIO listener for the process's life. Off by default: an I/O error under the
   * mapping still ends the whole process with SIGBUS, which an embedding program (a VM
   * manager's daemon) must not risk. The CLI's checksum turns it on.
   */
  mapFiles?: boolean;
}

export interface ChecksumResult {
  /** Lowercase hex digest, as blksum prints it. */
  digest: string;
  algorithm: string;
  blockSize: number;
  /** Bytes hashed (the image's virtual size, or the stream's length). */
  size: number;
  /** Bytes read from the image (zero extents are never read). */
  bytesRead: number;
  /** Bytes that went through the block hash as data (zero blocks are not hashed). */
  hashedBytes: number;
}

interface Setup {
  sink: OrderedBlkHash;
  release(): Promise<void>;
}

function setup(opts: ChecksumOptions, total: number | undefined): Setup {
  const digester = new BlockDigester(opts.digest, opts.blockSize);
  const bs = digester.blockSize;
  const requested = intOption(
    'windowSize',
    opts.windowSize,
    DEFAULT_WINDOW_SIZE,
    1,
    MAX_WINDOW_SIZE,
  );
  intOption('threads', opts.threads, 0, 0, 256);
  intOption('inFlight', opts.inFlight, 1, 1, 64);
  const windowSize = Math.ceil(requested / bs) * bs;
  let hasher: BlockHasher;
  let owned = false;
  if (opts.hasher) hasher = opts.hasher;
  else if (opts.threads === 0) hasher = new InlineHasher();
  // An image of one window has nothing to hash alongside: starting a worker for it (a thread
  // loading its modules) took longer than hashing it here.
  else if (opts.threads === undefined && total !== undefined && total <= windowSize)
    hasher = new InlineHasher();
  else if (opts.threads === undefined) hasher = sharedHashPool();
  else {
    hasher = new HashPool(opts.threads);
    owned = true;
  }
  // Workers boot while the image's first windows are read; no more than there are windows.
  if (hasher instanceof HashPool) hasher.warm(Math.ceil((total ?? 0) / windowSize));
  const inFlight =
    opts.inFlight ?? Math.min(hasher.threads * JOBS_PER_WORKER + 2, MAX_DEFAULT_IN_FLIGHT);
  const sink = new OrderedBlkHash(digester, hasher, {
    windowSize,
    inFlight,
    onProgress: opts.onProgress
      ? (done, total) => opts.onProgress?.({ phase: 'checksum', done, total })
      : undefined,
    total,
  });
  return { sink, release: async () => (owned ? hasher.close() : undefined) };
}

function checkAborted(signal: AbortSignal | undefined): void {
  throwIfAborted(signal, 'checksum');
}

async function result(sink: OrderedBlkHash, bytesRead: number): Promise<ChecksumResult> {
  const size = sink.length;
  const digest = (await sink.digest()).toString('hex');
  return {
    digest,
    algorithm: sink.digester.algorithm,
    blockSize: sink.digester.blockSize,
    size,
    bytesRead,
    hashedBytes: sink.hashedBytes,
  };
}

/** The blkhash digest of an image's guest-visible bytes. The image is not closed. */
export async function checksumImage(
  image: Image,
  opts: ChecksumOptions = {},
): Promise<ChecksumResult> {
  const { sink, release } = setup(opts, image.size);
  let lease: ReadLease | undefined;
  try {
    const direct = sink.readsFiles ? await directSource(image) : undefined;
    const walker = new ExtentWalker(image, sink, opts.signal, direct);
    if (opts.mapFiles === true && direct && isNativeEnabled()) {
      lease = leaseForMapping(direct.file.fd, walker, sink);
    }
    let run: Run | undefined;
    const runs = direct?.runs ?? (image.extents(0, image.size) as AsyncIterable<DirectRun>);
    // Adjacent extents that read the same way are one run (hole or not does not matter here).
    for await (const e of runs) {
      checkExtent(e, run?.end ?? 0, image);
      if (run && run.zero === e.zero && run.end === e.offset && continues(run, e)) {
        run.end = e.offset + e.length;
        continue;
      }
      if (run) await walker.run(run);
      run = { start: e.offset, end: e.offset + e.length, zero: e.zero, host: e.host };
    }
    if (run) await walker.run(run);
    if (walker.position !== image.size) {
      throw new CorruptImageError(
        `${image.format}: extents cover ${walker.position} of ${image.size} bytes`,
      );
    }
    await walker.flush();
    return await result(sink, walker.bytesRead);
  } finally {
    await sink.settle();
    lease?.release();
    await release();
  }
}

/**
 * Maps the file only under a read lease (io/read-lease.ts): a program that truncates it waits
 * until the mapped windows in flight are hashed, so the truncation is a clean read error, not
 * SIGBUS. No lease, no mapping.
 */
function leaseForMapping(
  fd: number,
  walker: ExtentWalker,
  sink: OrderedBlkHash,
): ReadLease | undefined {
  const lease = takeReadLease(fd, () => {
    walker.mapFiles = false;
    void walker
      .idle()
      .then(() => sink.settle())
      .finally(() => lease?.release());
  });
  walker.mapFiles = lease !== undefined;
  return lease;
}

/** A run of extents that read the same way; data at file offset `host` when that is set. */
interface Run {
  start: number;
  end: number;
  zero: boolean;
  host?: number | undefined;
}

/** Whether `e` continues `run` in the file too (zeroes and read-through data always do). */
function continues(run: Run, e: DirectRun): boolean {
  if (run.zero) return true;
  if (run.host === undefined || e.host === undefined) return run.host === e.host;
  return e.host === run.host + (run.end - run.start);
}

/** Extents come from formats that may be hostile: each must continue where the last ended. */
function checkExtent(e: Extent, expected: number, image: Image): void {
  const end = e.offset + e.length;
  if (
    e.offset !== expected ||
    !Number.isSafeInteger(e.length) ||
    e.length <= 0 ||
    end > image.size
  ) {
    throw new CorruptImageError(
      `${image.format}: bad extent ${e.offset}+${e.length} (expected one at ${expected})`,
    );
  }
}

/** The blkhash digest of a byte stream (stdin, a decompressor), hashed as it arrives. */
export async function checksumStream(
  stream: AsyncIterable<Uint8Array | string>,
  opts: ChecksumOptions = {},
): Promise<ChecksumResult> {
  const { sink, release } = setup(opts, undefined);
  try {
    const w = sink.windowSize;
    let buf = await sink.acquire();
    let fill = 0;
    let bytesRead = 0;
    for await (const chunk of stream) {
      if (typeof chunk === 'string') throw new UsageError('checksum needs a byte stream, not text');
      bytesRead += chunk.length;
      let pos = 0;
      if (isZeroChunk(chunk)) {
        // Zeroes the decoder already knows about: the block in progress is completed, whole
        // blocks are counted, never copied or hashed.
        const bs = sink.digester.blockSize;
        pos = Math.min(chunk.length, (bs - (fill % bs)) % bs);
        buf.fill(0, fill, fill + pos);
        fill += pos;
        const full = Math.floor((chunk.length - pos) / bs);
        if (full > 0) {
          if (fill > 0) {
            sink.submit(buf, fill);
            buf = await sink.acquire();
            fill = 0;
          }
          sink.zeroBlocks(full);
          pos += full * bs;
        }
      }
      while (pos < chunk.length) {
        const n = Math.min(w - fill, chunk.length - pos);
        buf.set(chunk.subarray(pos, pos + n), fill);
        fill += n;
        pos += n;
        if (fill === w) {
          checkAborted(opts.signal);
          sink.submit(buf, w);
          buf = await sink.acquire();
          fill = 0;
        }
      }
    }
    if (fill > 0) sink.submit(buf, fill);
    return await result(sink, bytesRead);
  } finally {
    await release();
  }
}

/** A range of a window to read: [offset, offset + length), at file offset `host` if set. */
interface WindowRead {
  offset: number;
  length: number;
  host: number | undefined;
}

/**
 * Turns runs of data and zeroes into windows and zero blocks. A window starts on a block
 * boundary and ends on one (or at the image end); zero bytes inside a window that also holds
 * data are zero-filled in the buffer, not read. Only whole blocks inside zero runs become Z.
 * A window that is one range of a local file (direct-runs.ts) is read by the hasher itself.
 */
class ExtentWalker {
  private readonly bs: number;
  private readonly w: number;
  /** The window being planned: [start, end) with the ranges to read; the rest is zeroes. */
  private cur: { start: number; end: number; reads: WindowRead[] } | undefined;
  position = 0;
  bytesRead = 0;
  /** Hash file windows through a mapping (only while a read lease is held). */
  mapFiles = false;
  /** The file window being handed to the hasher, if any. */
  private submitting: Promise<void> | undefined;

  constructor(
    private readonly image: Image,
    private readonly sink: OrderedBlkHash,
    private readonly signal: AbortSignal | undefined,
    private readonly direct: DirectSource | undefined,
  ) {
    this.bs = sink.digester.blockSize;
    this.w = sink.windowSize;
  }

  async run(r: Run): Promise<void> {
    if (r.start !== this.position) {
      throw new CorruptImageError(`${this.image.format}: extents skip to ${r.start}`);
    }
    if (r.zero) await this.zeroRun(r.start, r.end);
    else await this.dataRun(r.start, r.end, r.host);
    this.position = r.end;
  }

  private async dataRun(from: number, to: number, host: number | undefined): Promise<void> {
    let pos = from;
    while (pos < to) {
      const cur = this.window(pos);
      const limit = cur.start + this.w;
      const end = Math.min(to, limit);
      const at = host === undefined ? undefined : host + (pos - from);
      const last = cur.reads.at(-1);
      if (last && last.offset + last.length === pos && sameFileRun(last, at)) {
        last.length += end - pos;
      } else cur.reads.push({ offset: pos, length: end - pos, host: at });
      cur.end = end;
      pos = end;
      if (end === limit) await this.flush();
    }
  }
  private async zeroRun(from: number, to: number): Promise<void> {
    const bs = this.bs;
    let pos = from;
    if (pos % bs !== 0) {
      // The rest of a block that holds data: zero-filled in its window.
      const stop = Math.min(to, pos + bs - (pos % bs));
      const cur = this.window(pos);
      cur.end = stop;
      pos = stop;
      if (cur.end === cur.start + this.w) await this.flush();
    }
    const full = Math.floor((to - pos) / bs);
    if (full > 0) {
      await this.flush();
      this.sink.zeroBlocks(full);
      pos += full * bs;
    }
    if (pos < to) this.window(pos).end = to;
  }

  /** The window that continues at `pos` (a new one must start on a block boundary). */
  private window(pos: number): { start: number; end: number; reads: WindowRead[] } {
    if (this.cur) {
      if (this.cur.end !== pos) throw new Error(`checksum walker: window gap at ${pos}`);
      return this.cur;
    }
    if (pos % this.bs !== 0) throw new Error(`checksum walker: unaligned window at ${pos}`);
    this.cur = { start: pos, end: pos, reads: [] };
    return this.cur;
  }

  /** Settles once the window being handed to the hasher (maybe mapped) is queued. */
  idle(): Promise<void> {
    return (this.submitting ?? Promise.resolve()).then(
      () => {},
      () => {},
    );
  }

  /** Reads the planned window into a buffer and queues it for hashing. */
  async flush(): Promise<void> {
    const cur = this.cur;
    if (!cur) return;
    this.cur = undefined;
    checkAborted(this.signal);
    const length = cur.end - cur.start;
    const position = this.fileOffset(cur);
    if (this.direct && position !== undefined) {
      for (const r of cur.reads) this.bytesRead += r.length;
      const { fd, name } = this.direct.file;
      const mapped = this.mapFiles && isNativeEnabled();
      this.submitting = this.sink.submitFile({ fd, position, name, mapped }, length);
      try {
        await this.submitting;
      } finally {
        this.submitting = undefined;
      }
      return;
    }
    const buf = await this.sink.acquire();
    let filled = 0;
    for (const r of cur.reads) {
      const at = r.offset - cur.start;
      if (at > filled) buf.fill(0, filled, at);
      this.bytesRead += r.length;
      filled = at + r.length;
    }
    if (length > filled) buf.fill(0, filled, length);
    const ready = cur.reads.length ? this.readAll(buf, cur.start, cur.reads) : undefined;
    this.sink.submit(buf, length, ready);
  }

  /**
   * Where the window starts in the local file, when the whole window is one range of it: its
   * data all verbatim in the file at one distance, and its zeroes either read from the file
   * too (a raw file's holes) or absent (the data covers the window).
   */
  private fileOffset(cur: { start: number; end: number; reads: WindowRead[] }): number | undefined {
    const first = cur.reads[0];
    if (!this.direct || first?.host === undefined) return undefined;
    const delta = first.host - first.offset;
    if (!this.direct.zeroesInFile) {
      const whole = cur.reads.length === 1 && first.length === cur.end - cur.start;
      return whole ? first.host : undefined;
    }
    for (const r of cur.reads)
      if (r.host === undefined || r.host - r.offset !== delta) return undefined;
    return cur.start + delta;
  }

  /** A window's reads, one after another: windows overlap, so reads stay bounded. */
  private async readAll(buf: Uint8Array, start: number, reads: WindowRead[]): Promise<void> {
    for (const r of reads) {
      await this.image.read(buf.subarray(r.offset - start, r.offset - start + r.length), r.offset);
    }
  }
}

/** Whether data at file offset `host` continues `last` in the file (or neither is in it). */
function sameFileRun(last: WindowRead, host: number | undefined): boolean {
  if (last.host === undefined || host === undefined) return last.host === host;
  return host === last.host + last.length;
}
