/**
 * clone: copies a file (any format) as cheaply as the filesystem allows. First a reflink
 * (FICLONE: O(1), blocks shared copy-on-write, XFS/btrfs); else a sparse copy that walks
 * SEEK_DATA/SEEK_HOLE and moves only data extents with copy_file_range (read/write when the
 * kernel cannot), skipping zero blocks found in data. Written under a temporary name; a block
 * device DST is written in place instead (every byte of the file: holes are zeroed there).
 */
import { IoError, ioError, NotCapableError, OutOfRangeError, oneOf } from '../errors.js';
import type { ProgressListener } from '../image/types.js';
import { throwIfAborted } from '../io/abort.js';
import { writeAtomically } from '../io/atomic.js';
import { markOutputCommitted } from '../io/cleanup.js';
import { destinationKind } from '../io/destination.js';
import { LocalFile } from '../io/file.js';
import { ficlone } from '../io/native.js';
import { firstNonZero, isZero } from './copy/blocks.js';

export type CloneStrategy = 'reflink' | 'sparse-copy';

export interface CloneOptions {
  /** 'auto' (default): reflink, else sparse copy. 'sparse-copy' skips the reflink attempt. */
  strategy?: 'auto' | CloneStrategy;
  /** fdatasync a sparse copy before it is renamed into place (default false, like cp). */
  sync?: boolean;
  /** Checked between chunks of a copy; an abort leaves no file at DST. */
  signal?: AbortSignal | undefined;
  /** Phase `copy`: bytes of the source handled (holes count too). */
  onProgress?: ProgressListener | undefined;
}

/** What a copy loop needs besides its files. */
interface Pace {
  signal: AbortSignal | undefined;
  progress(done: number): void;
}

export interface CloneResult {
  strategy: CloneStrategy;
  /** Bytes the copy really wrote (0 for a reflink). */
  bytesWritten: number;
  size: number;
}

const CHUNK = 4 * 1024 * 1024;
/** Largest copy_file_range call: between calls an abort is noticed. */
const KERNEL_PIECE = 16 * 1024 * 1024;
const BLOCK = 4096;
const STRATEGIES = ['auto', 'reflink', 'sparse-copy'] as const;

export async function cloneFile(
  src: string,
  dst: string,
  opts: CloneOptions = {},
): Promise<CloneResult> {
  const strategy = oneOf('strategy', opts.strategy ?? 'auto', STRATEGIES);
  throwIfAborted(opts.signal, 'clone');
  const kind = await destinationKind(dst, { blockDevice: true });
  const from = await LocalFile.open(src, 'r');
  const pace: Pace = {
    signal: opts.signal,
    progress: (done) => opts.onProgress?.({ phase: 'copy', done, total: from.size }),
  };
  try {
    if (kind === 'block-device') return await cloneOntoDevice(from, dst, pace);
    return await writeAtomically(
      dst,
      async (tmp) => {
        const to = await LocalFile.open(tmp, 'w+');
        try {
          if (strategy !== 'sparse-copy' && reflink(from, to)) {
            pace.progress(from.size);
            return { strategy: 'reflink', bytesWritten: 0, size: from.size } as const;
          }
          if (strategy === 'reflink') {
            throw new NotCapableError(`cannot reflink ${src}: not supported here`);
          }
          await to.truncate(from.size);
          const bytesWritten = await sparseCopy(from, to, pace);
          if (opts.sync === true) await to.sync();
          return { strategy: 'sparse-copy', bytesWritten, size: from.size } as const;
        } finally {
          await to.close();
        }
      },
      { final: true },
    );
  } finally {
    await from.close();
  }
}

/** Copies the data of `from` onto a block device in place, zeroing its holes, then flushes. */
async function cloneOntoDevice(from: LocalFile, dst: string, pace: Pace): Promise<CloneResult> {
  const to = await LocalFile.openBlockDevice(dst);
  try {
    if (to.size < from.size) {
      throw new OutOfRangeError(
        `${dst} is too small: the device has ${to.size} bytes, ${from.path} has ${from.size}`,
      );
    }
    let written = 0;
    let pos = 0;
    const buf = Buffer.allocUnsafe(CHUNK);
    for (const [start, end] of dataExtents(from)) {
      if (start > pos) await to.zero(pos, start - pos, false);
      for (let off = start; off < end; off += CHUNK) {
        throwIfAborted(pace.signal, 'clone');
        pace.progress(off);
        const chunk = buf.subarray(0, Math.min(CHUNK, end - off));
        const n = await from.read(chunk, off);
        if (n !== chunk.length) {
          throw new IoError(`${from.path} changed while being copied`);
        }
        if (firstNonZero(chunk) < 0) {
          await to.zero(off, chunk.length, false);
        } else {
          await to.write(chunk, off);
          written += chunk.length;
        }
      }
      pos = end;
    }
    if (from.size > pos) await to.zero(pos, from.size - pos, false);
    await to.sync();
    markOutputCommitted();
    return { strategy: 'sparse-copy', bytesWritten: written, size: from.size };
  } finally {
    await to.close();
  }
}

/** FICLONE; false where the filesystem cannot share blocks (the caller copies instead). */
function reflink(from: LocalFile, to: LocalFile): boolean {
  try {
    return ficlone(to.fd, from.fd);
  } catch (err) {
    throw ioError(err, `cannot clone ${from.path} to ${to.path}`);
  }
}

/** Data extents of a file as [start, end) (the whole file when holes cannot be found). */
function* dataExtents(file: LocalFile): Generator<[number, number]> {
  for (const r of file.runs(0, file.size)) if (!r.hole) yield [r.offset, r.offset + r.length];
}

async function sparseCopy(from: LocalFile, to: LocalFile, pace: Pace): Promise<number> {
  let written = 0;
  let buf: Buffer | undefined;
  let kernel = true;
  for (const [start, end] of dataExtents(from)) {
    // The kernel copies in pieces, so an abort (and progress) is seen between them.
    let off = start;
    while (kernel && off < end) {
      throwIfAborted(pace.signal, 'clone');
      pace.progress(off);
      const len = Math.min(KERNEL_PIECE, end - off);
      const n = await from.copyRangeTo(to, off, len).catch((err: unknown) => {
        // The kernel's errno (ENOSPC on a full disk) names neither file; the user's DST is
        // named in place of the temporary file by writeAtomically.
        throw ioError(err, `cannot copy ${from.path} to ${to.path} at offset ${off}`);
      });
      if (n === len) {
        written += n;
        off += n;
        continue;
      }
      if (n >= 0) throw new IoError(`${from.path} changed while being copied`);
      kernel = false; // copy_file_range unsupported here: read and write from now on
    }
    if (off >= end) continue;
    buf ??= Buffer.allocUnsafe(CHUNK);
    for (; off < end; off += CHUNK) {
      throwIfAborted(pace.signal, 'clone');
      pace.progress(off);
      const len = Math.min(CHUNK, end - off);
      const chunk = buf.subarray(0, len);
      const n = await from.read(chunk, off);
      if (n !== len) throw new IoError(`${from.path} changed while being copied`);
      written += await writeNonZero(to, chunk, off);
    }
  }
  return written;
}

/** Writes the non-zero 4 KiB blocks of `chunk` (the target is sparse already). */
async function writeNonZero(to: LocalFile, chunk: Buffer, offset: number): Promise<number> {
  if (firstNonZero(chunk) < 0) return 0;
  let written = 0;
  let runStart = -1;
  const flush = async (end: number) => {
    await to.write(chunk.subarray(runStart, end), offset + runStart);
    written += end - runStart;
    runStart = -1;
  };
  for (let pos = 0; pos < chunk.length; pos += BLOCK) {
    const zero = isZero(chunk.subarray(pos, Math.min(pos + BLOCK, chunk.length)));
    if (!zero && runStart < 0) runStart = pos;
    if (zero && runStart >= 0) await flush(pos);
  }
  if (runStart >= 0) await flush(chunk.length);
  return written;
}
