/**
 * Reading a local file range in place through mmap (koffi + libc), for code that only looks at
 * the bytes once (hashing, decompressing): no pread copy. On this machine class that copy
 * (`_copy_to_iter`) cost 70% as much CPU as SHA-256 of the same bytes.
 *
 * Only what the file holds when the call starts is mapped (fstat first): a range that runs
 * past the end is refused, and the caller reads it instead (and reports where the file
 * ended). A file truncated by another process *while* it is mapped ends the process with
 * SIGBUS, so callers opt in per call, and DISKPIPE_NO_NATIVE=1 turns it off.
 */
import { fstatSync } from 'node:fs';
import { libcBinding } from './system-lib.js';

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

/** Ranges this thread used in place (for tests: a count, not a time). */
export const mappedStats = { ranges: 0 };

const load = libcBinding(({ koffi, lib }): Mmap => {
  const map = lib.func(
    'void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)',
  );
  const unmap = lib.func('int munmap(void *addr, size_t len)');
  return {
    map: (length, fd, offset) => map(null, length, PROT_READ, MAP_SHARED, fd, offset),
    unmap: (ptr, length) => unmap(ptr, length),
    view: (ptr, length) => koffi.view(ptr, length),
    failed: (ptr) => ptr === null || BigInt(koffi.address(ptr)) === MAP_FAILED,
  };
});

/**
 * Calls `use` with the bytes of fd[position, position + length) mapped read-only, and returns
 * its result; undefined (without calling it) when the range cannot be mapped: no koffi or libc,
 * mmap failed, or the file is shorter than the range. The view is unmapped when `use` returns:
 * it must keep no reference to it (a later access would crash).
 */
export function withMappedRange<T>(
  fd: number,
  position: number,
  length: number,
  use: (bytes: Uint8Array) => T,
): T | undefined {
  const m = load();
  if (!m || length <= 0) return undefined;
  if (position + length > fstatSync(fd).size) return undefined;
  const skip = position % MAP_ALIGN;
  const mapLength = skip + length;
  const ptr = m.map(mapLength, fd, position - skip);
  if (m.failed(ptr)) return undefined;
  try {
    const result = use(new Uint8Array(m.view(ptr, mapLength), skip, length));
    mappedStats.ranges++;
    return result;
  } finally {
    m.unmap(ptr, mapLength);
  }
}
