/**
 * Hashing a local file range through mmap: the hash reads the page cache in place. Reading
 * the same range with pread copies every byte into a buffer first, and on this machine class
 * that copy (`_copy_to_iter`) cost 70% as much CPU as SHA-256 itself (perf, perf.raw), all of
 * it system time; mapped, the range costs almost none.
 *
 * Only the part of the file that exists when the job starts is mapped (fstat first): a range
 * that runs past the end is left to the read path, which reports where the file ended. A file
 * truncated by another process *while* it is mapped would end the process with SIGBUS, so the
 * caller opts in (FileRange.mapped) and DISKPIPE_NO_NATIVE=1 turns it off.
 */
import { fstatSync } from 'node:fs';
import { loadSystemLib } from '../../io/system-lib.js';
import type { BlockDigester } from './blkhash.js';

/** Mappings start on this boundary: a multiple of every page size Linux uses (4 KiB–64 KiB). */
const MAP_ALIGN = 64 * 1024;
const PROT_READ = 1;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

interface Mmap {
  map(length: number, fd: number, offset: number): unknown;
  unmap(ptr: unknown, length: number): void;
  view(ptr: unknown, length: number): ArrayBuffer;
  failed(ptr: unknown): boolean;
}

let mmap: Mmap | null | undefined;

/** Ranges this thread hashed through a mapping (for tests: a count, not a time). */
export const mappedStats = { ranges: 0 };

function load(): Mmap | null {
  if (mmap !== undefined) return mmap;
  mmap = null;
  const sys = loadSystemLib(['libc.so.6']);
  if (typeof sys === 'string') return null;
  try {
    const { koffi, lib } = sys;
    const map = lib.func(
      'void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)',
    );
    const unmap = lib.func('int munmap(void *addr, size_t len)');
    mmap = {
      map: (length, fd, offset) => map(null, length, PROT_READ, MAP_SHARED, fd, offset),
      unmap: (ptr, length) => unmap(ptr, length),
      view: (ptr, length) => koffi.view(ptr, length),
      failed: (ptr) => ptr === null || BigInt(koffi.address(ptr)) === MAP_FAILED,
    };
  } catch {
    mmap = null;
  }
  return mmap;
}

/**
 * One digest per block of the file range fd[position, position + length), hashed from a
 * mapping of the range; undefined when it cannot be mapped (no koffi or libc, mmap failed, or
 * the file is shorter than the range): the caller then reads the range.
 */
export function hashMappedRange(
  digester: BlockDigester,
  fd: number,
  position: number,
  length: number,
): { digests: Uint8Array; hashedBytes: number } | undefined {
  const m = load();
  if (!m || length <= 0) return undefined;
  if (position + length > fstatSync(fd).size) return undefined;
  const skip = position % MAP_ALIGN;
  const mapLength = skip + length;
  const ptr = m.map(mapLength, fd, position - skip);
  if (m.failed(ptr)) return undefined;
  try {
    const data = new Uint8Array(m.view(ptr, mapLength), skip, length);
    const digests = new Uint8Array(Math.ceil(length / digester.blockSize) * digester.digestLength);
    const hashedBytes = digester.hashBlocks(data, length, digests);
    mappedStats.ranges++;
    return { digests, hashedBytes };
  } finally {
    // No view of the mapping outlives this call: hashBlocks keeps none.
    m.unmap(ptr, mapLength);
  }
}
