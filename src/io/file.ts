import { type FileHandle, open } from 'node:fs/promises';
import { ioError } from '../errors.js';
import type { ByteSource } from '../image/types.js';
import { DataRuns } from './data-runs.js';
import {
  copyFileRange,
  punchHole,
  readCached,
  type SeekResult,
  seekDataHole,
  zeroRange,
} from './native.js';

/** A local file as a ByteSource, with the write side the raw format and the copy engine use. */
export class LocalFile implements ByteSource {
  /** Try preadv2(RWF_NOWAIT) first (off once the filesystem says it cannot). */
  private cachedReads = true;
  private readonly dataRuns = new DataRuns();

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    public size: number,
    readonly writable: boolean,
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
      handle = await open(path, mode);
    } catch (err) {
      throw ioError(err, `cannot open ${path}`);
    }
    try {
      const st = await handle.stat();
      if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      const size = st.isBlockDevice() ? await blockDeviceSize(handle) : st.size;
      return new LocalFile(handle, path, size, mode !== 'r');
    } catch (err) {
      await handle.close();
      throw ioError(err, `cannot open ${path}`);
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    let done = 0;
    // Cached data is copied at once; the thread pool is for data that must come from disk.
    if (this.cachedReads && buf.length > 0) {
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
          buf.length - done,
          offset + done,
        );
        done += bytesWritten;
      }
    } catch (err) {
      throw ioError(err, `write error on ${this.path} at offset ${offset}`);
    }
    if (offset + buf.length > this.size) this.size = offset + buf.length;
  }

  async truncate(size: number): Promise<void> {
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
    const end = Math.min(offset + length, this.size);
    if (end > offset) {
      const done =
        (mayTrim && punchHole(this.fd, offset, end - offset)) ||
        zeroRange(this.fd, offset, end - offset);
      if (!done) await writeZeroes(this, offset, end - offset);
    }
    if (offset + length > this.size) await this.truncate(offset + length);
  }

  /** Deallocates a range if the filesystem can (advisory). */
  trim(offset: number, length: number): void {
    this.dataRuns.clear();
    const end = Math.min(offset + length, this.size);
    if (end > offset) punchHole(this.fd, offset, end - offset);
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

  /** Copies [offset, offset+length) into `dst` at the same offset in the kernel; -1 if it cannot. */
  copyRangeTo(dst: LocalFile, offset: number, length: number): number {
    return copyFileRange(this.fd, dst.fd, offset, length);
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

async function blockDeviceSize(handle: FileHandle): Promise<number> {
  // A block device reports size 0 in stat; its end is where reading stops.
  const seeker = seekDataHole(handle.fd, 0, 'hole');
  if (typeof seeker === 'number') return seeker;
  return 0;
}
