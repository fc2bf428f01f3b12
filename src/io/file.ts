import { constants, readFileSync, type Stats, writeSync } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { IoError, ioError, OutOfRangeError, UsageError } from '../errors.js';
import type { ByteSource } from '../image/types.js';
import { copyRangeAsync } from './copy-range-async.js';
import { DataRuns } from './data-runs.js';
import { sysBlockPath } from './device-number.js';
import {
  blockDeviceSize,
  blockZeroOut,
  copyFileRange,
  punchHole,
  readCached,
  type SeekResult,
  seekDataHole,
  zeroRange,
} from './native.js';

/**
 * Largest read copied synchronously from the page cache (preadv2 RWF_NOWAIT): NBD requests
 * and grouped compressed clusters; larger reads go to the thread pool.
 */
const SYNC_READ_MAX = 256 * 1024;

/**
 * Reads of a file that go the usual way before cached reads start: the native layer takes
 * ~10 ms of CPU to load, more than a command that reads a few headers (info, map) could
 * save with it; a data-heavy job makes thousands of reads.
 */
const READS_BEFORE_CACHED = 16;

/**
 * Largest single write call. A larger write is issued as several: Linux (6.x, ext4/XFS large
 * folios) backs one 2 MiB buffered write with 2 MiB page-cache folios, taken from the free
 * blocks of that order, which on a VM with free page reporting are the ones handed back to
 * the host and faulted in again (system time). Measured here writing 1.5 GiB (medians of 4,
 * page state equalized): 2 MiB writes 3.6 s sys, 256 KiB writes 1.8 s, 64 KiB writes 1.9 s
 * (qemu-img writes 64 KiB per compressed cluster).
 */
export const WRITE_PIECE = 256 * 1024;

/** A local file as a ByteSource, with the write side the raw format and the copy engine use. */
/** A run of a file: data, or a hole (no storage; reads as zeroes). */
export interface FileRun {
  offset: number;
  length: number;
  hole: boolean;
}

/**
 * A FIFO, socket or character device has no size: read as a file it would pass for an empty
 * image (a wrong digest presented as right). Pipes are read as `-` (stdin), sequentially.
 */
function refuseUnsized(path: string, st: Stats): void {
  const what = st.isFIFO()
    ? 'a FIFO'
    : st.isSocket()
      ? 'a socket'
      : st.isCharacterDevice()
        ? 'a character device'
        : undefined;
  if (what === undefined) return;
  throw new UsageError(
    `cannot open ${path}: it is ${what}, not an image file or a block device (to read a pipe, give it on stdin as '-')`,
  );
}

export class LocalFile implements ByteSource {
  /** Try preadv2(RWF_NOWAIT) first (off once the filesystem says it cannot). */
  private cachedReads = true;
  private reads = 0;
  private readonly dataRuns = new DataRuns();

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    public size: number,
    readonly writable: boolean,
    /** A block device: fixed size, zeroed with BLKZEROOUT, never discarded or resized. */
    readonly blockDevice = false,
  ) {}

  get name(): string {
    return this.path;
  }

  get fd(): number {
    return this.handle.fd;
  }

  static async open(path: string, mode: 'r' | 'r+' | 'w+' = 'r'): Promise<LocalFile> {
    let handle: FileHandle;
    try {
      // Looked at before opening too: opening a FIFO with no writer would wait forever.
      const before = await stat(path).catch(() => undefined); // 'w+' may create it
      if (before) refuseUnsized(path, before);
      handle = await open(path, mode);
    } catch (err) {
      throw ioError(err, `cannot open ${path}`);
    }
    try {
      const st = await handle.stat();
      refuseUnsized(path, st);
      if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      const device = st.isBlockDevice();
      const size = device ? deviceSize(handle, st.rdev) : st.size;
      return new LocalFile(handle, path, size, mode !== 'r', device);
    } catch (err) {
      await handle.close();
      throw ioError(err, `cannot open ${path}`);
    }
  }

  /**
   * Opens a block device for writing in place, exclusively (O_EXCL): the kernel refuses a
   * device that is mounted or held open exclusively by someone else (EBUSY).
   */
  static async openBlockDevice(path: string): Promise<LocalFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBUSY') {
        throw new IoError(
          `cannot open ${path} for writing: EBUSY: the device is in use (mounted, or open exclusively by another program)`,
          { cause: err },
        );
      }
      throw ioError(err, `cannot open ${path} for writing`);
    }
    try {
      const st = await handle.stat();
      if (!st.isBlockDevice()) {
        throw new IoError(`cannot write to ${path}: no longer a block device`);
      }
      return new LocalFile(handle, path, deviceSize(handle, st.rdev), true, true);
    } catch (err) {
      await handle.close();
      throw ioError(err, `cannot open ${path}`);
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    let done = 0;
    // Cached data is copied at once; the thread pool is for data that must come from disk,
    // and for large reads: a 2 MiB copy from the page cache takes this thread ~4 ms here,
    // time it cannot spend feeding the decode workers (the main thread was the bottleneck
    // of a compressed qcow2 copy whose incompressible clusters are stored plain).
    const sync = buf.length > 0 && buf.length <= SYNC_READ_MAX;
    if (this.cachedReads && sync && ++this.reads > READS_BEFORE_CACHED) {
      const n = readCached(this.fd, buf, offset);
      if (n === 'unsupported') this.cachedReads = false;
      else if (n !== 'again') {
        if (n === buf.length || n === 0) return n;
        done = n;
      }
    }
    try {
      while (done < buf.length) {
        const { bytesRead } = await this.handle.read(buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw ioError(err, `read error on ${this.path} at offset ${offset + done}`);
    }
    return done;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await this.handle.write(
          buf,
          done,
          Math.min(buf.length - done, WRITE_PIECE),
          offset + done,
        );
        done += bytesWritten;
      }
    } catch (err) {
      throw ioError(err, `write error on ${this.path} at offset ${offset}`);
    }
    if (offset + buf.length > this.size) this.size = offset + buf.length;
  }

  /**
   * write() on this thread, in the same WRITE_PIECE calls, then one turn of the event loop.
   * For the copy engine's writes into a regular file, where each thread-pool round trip of
   * write() costs more than the call (a 2 MiB request is 8 of them). Measured converting the
   * rootfs qcow2 (728 MB of data) to raw, medians of 5: wall 1.05 → 0.89 s, user 0.49 → 0.38 s,
   * voluntary context switches 4,060 → 1,301; perf zstd qcow2: 2.57 → 1.97 s. The event loop
   * waits for one request's writes (≤ 8 MiB; usually a few ms, 85 ms seen on this VM), so
   * only callers that ask for it use this (CopyOptions.blockingWrites).
   */
  async writeBlocking(buf: Uint8Array, offset: number): Promise<void> {
    this.writeNow(buf, offset);
    await yieldToEventLoop();
  }

  /**
   * writeBlocking() without the turn of the event loop: for a caller that yields anyway
   * between its writes (the download's sparse writer, between stages).
   */
  writeNow(buf: Uint8Array, offset: number): void {
    let done = 0;
    try {
      while (done < buf.length) {
        const len = Math.min(buf.length - done, WRITE_PIECE);
        done += writeSync(this.fd, buf, done, len, offset + done);
      }
    } catch (err) {
      throw ioError(err, `write error on ${this.path} at offset ${offset + done}`);
    }
    if (offset + buf.length > this.size) this.size = offset + buf.length;
  }

  async truncate(size: number): Promise<void> {
    if (this.blockDevice) {
      throw new IoError(`cannot resize ${this.path}: it is a block device`);
    }
    this.dataRuns.clear();
    try {
      await this.handle.truncate(size);
    } catch (err) {
      throw ioError(err, `cannot resize ${this.path}`);
    }
    this.size = size;
  }

  /** Makes a range read as zeroes, deallocating it where the filesystem can. */
  async zero(offset: number, length: number, mayTrim: boolean): Promise<void> {
    this.dataRuns.clear(); // the range may become a hole
    if (this.blockDevice) return this.zeroDevice(offset, length);
    const end = Math.min(offset + length, this.size);
    if (end > offset) {
      const done =
        (mayTrim && (await punchHole(this.fd, offset, end - offset))) ||
        (await zeroRange(this.fd, offset, end - offset));
      if (!done) await writeZeroes(this, offset, end - offset);
    }
    if (offset + length > this.size) await this.truncate(offset + length);
  }

  /**
   * A block device range is zeroed with BLKZEROOUT (the aligned middle) and written zeroes
   * (unaligned ends, or when the device cannot); a discard alone would not guarantee zeroes.
   */
  private async zeroDevice(offset: number, length: number): Promise<void> {
    const end = offset + length;
    if (end > this.size) {
      throw new OutOfRangeError(
        `cannot zero ${this.path} up to ${end}: the device has ${this.size} bytes`,
      );
    }
    const start = Math.min(Math.ceil(offset / 512) * 512, end);
    const stop = Math.max(Math.floor(end / 512) * 512, start);
    let zeroed = false;
    try {
      zeroed = await blockZeroOut(this.fd, start, stop - start);
    } catch (err) {
      throw ioError(err, `cannot zero ${this.path} at offset ${start}`);
    }
    if (!zeroed) return writeZeroes(this, offset, length);
    await writeZeroes(this, offset, start - offset);
    await writeZeroes(this, stop, end - stop);
  }

  /** Deallocates a range if the filesystem can (advisory; never on a block device). */
  async trim(offset: number, length: number): Promise<void> {
    if (this.blockDevice) return;
    this.dataRuns.clear();
    const end = Math.min(offset + length, this.size);
    if (end > offset) await punchHole(this.fd, offset, end - offset);
  }

  async sync(): Promise<void> {
    try {
      await this.handle.datasync();
    } catch (err) {
      throw ioError(err, `cannot flush ${this.path}`);
    }
  }

  /** The next data/hole boundary at or after `offset` (SEEK_DATA/SEEK_HOLE). */
  seek(offset: number, what: 'data' | 'hole'): SeekResult {
    const end = this.dataRuns.endOf(offset);
    if (end !== undefined) return what === 'data' ? offset : end;
    const found = seekDataHole(this.fd, offset, what);
    // SEEK_HOLE moving past `offset` means [offset, found) is data.
    if (what === 'hole' && typeof found === 'number' && found > offset) {
      this.dataRuns.add(offset, found);
    }
    return found;
  }

  /**
   * Splits [offset, offset+length) into data and hole runs (SEEK_DATA/SEEK_HOLE), one pair of
   * calls per run as the caller asks. Past the end of the file is a hole; where the file
   * system cannot tell, the rest is data. The one walker every format and op uses.
   */
  *runs(offset: number, length: number): Generator<FileRun> {
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const data = pos >= this.size ? 'eof' : this.seek(pos, 'data');
      if (data === 'unsupported') {
        yield { offset: pos, length: end - pos, hole: false };
        return;
      }
      const dataStart = data === 'eof' ? end : Math.min(data, end);
      if (dataStart > pos) {
        yield { offset: pos, length: dataStart - pos, hole: true };
        pos = dataStart;
        if (pos >= end) return;
      }
      const hole = this.seek(pos, 'hole');
      const dataEnd = typeof hole === 'number' && hole > pos ? Math.min(hole, end) : end;
      yield { offset: pos, length: dataEnd - pos, hole: false };
      pos = dataEnd;
    }
  }

  /** Copies [offset, offset+length) into `dst` at the same offset in the kernel; -1 if it cannot. */
  copyRangeTo(dst: LocalFile, offset: number, length: number): Promise<number> {
    return copyFileRange(this.fd, dst.fd, offset, length);
  }

  /**
   * Copies [offset, offset+length) into `dst` at the same offsets in one thread-pool job per
   * call (copy-range-async.ts), the main thread free meanwhile. False when the kernel cannot
   * for this pair (a block device, another filesystem): write the bytes then.
   */
  async copyDataTo(dst: LocalFile, offset: number, length: number): Promise<boolean> {
    if (this.blockDevice || dst.blockDevice) return false;
    let n: number | 'unsupported';
    try {
      n = await copyRangeAsync(this.fd, dst.fd, offset, length);
    } catch (err) {
      throw ioError(err, `copy error from ${this.path} to ${dst.path} at offset ${offset}`);
    }
    if (n === 'unsupported') return false;
    if (n !== length) {
      throw new IoError(`${this.path} ended at ${offset + n} while being copied (it changed)`);
    }
    if (offset + length > dst.size) dst.size = offset + length;
    return true;
  }

  async allocatedSize(): Promise<number> {
    const st = await this.handle.stat();
    return st.blocks * 512;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

const ZEROES = new Uint8Array(1 << 20);

async function writeZeroes(file: LocalFile, offset: number, length: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const n = Math.min(ZEROES.length, length - done);
    await file.write(ZEROES.subarray(0, n), offset + done);
    done += n;
  }
}

/**
 * A block device reports size 0 in stat: ask the kernel (BLKGETSIZE64); without the native
 * layer, Linux's sysfs has it in 512-byte sectors.
 */
function deviceSize(handle: FileHandle, rdev: number): number {
  const size = blockDeviceSize(handle.fd);
  if (size !== 'unsupported') return size;
  try {
    const sectors = readFileSync(`${sysBlockPath(rdev)}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  } catch {
    return 0; // unknown: a size check then refuses the device rather than guessing
  }
}
