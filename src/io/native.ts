/**
 * The few system calls Node's fs lacks, through koffi (a prebuilt FFI binding shipped inside
 * its npm package). Every call has a portable fallback; `nativeStatus()` says which path runs.
 *
 * Calls are synchronous (koffi's async calls cost ~50 µs each) and block the event loop while
 * they run. lseek, flock, preadv2(RWF_NOWAIT) and the size ioctl are cheap. The calls that move
 * or free data — copy_file_range, fallocate (punch hole, zero range), BLKZEROOUT — take time in
 * proportion to their length (and to how busy the disk is), so each call covers at most
 * MAX_CALL_BYTES (4 MiB) and the exported functions await setImmediate after each call: a 1 GiB
 * copy_file_range is 256 calls with the event loop free in between, and a copy made of many
 * small ranges lets it run too. FICLONE is one call for the whole file (a reflink shares
 * extents without copying data); ficlone, punchBlock and the cheap calls do not yield.
 */
import { createRequire } from 'node:module';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { pointStdioFilesAtNull } from './stdio-exit.js';

/** Largest range one blocking call covers (copy_file_range, fallocate, BLKZEROOUT). */
export const MAX_CALL_BYTES = 4 * 1024 * 1024;

/** For tests: sees every blocking call that covers a range, with its length. */
export const nativeCallHook: { onCall?: (op: string, length: number) => void } = {};

/**
 * Runs `call` over [offset, offset+length) in slices of at most MAX_CALL_BYTES, yielding to the
 * event loop after each. `call` returns the bytes it handled (fewer ends the run).
 */
async function inSlices(
  op: string,
  offset: number,
  length: number,
  call: (offset: number, length: number) => number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const len = Math.min(length - done, MAX_CALL_BYTES);
    nativeCallHook.onCall?.(op, len);
    const n = call(offset + done, len);
    done += n;
    // After every call, not only between slices: callers run many calls in a chain of
    // promises that never reaches the event loop by itself (8 copy workers, 2 MiB each).
    await yieldToEventLoop();
    if (n < len) break;
  }
  return done;
}

const require = createRequire(import.meta.url);

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
const FICLONE = 0x40049409;
const ENXIO = 6;
const BLKGETSIZE64 = 0x80081272;
const BLKZEROOUT = 0x127f;

interface Libc {
  lseek(fd: number, offset: number, whence: number): number;
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  ioctl(fd: number, request: number, arg: number): number;
  /** ioctl with a uint64_t* argument the kernel fills (BLKGETSIZE64). */
  ioctlGet64(fd: number, request: number, out: number[]): number;
  /** ioctl with a uint64_t[] argument the kernel reads (BLKZEROOUT's range). */
  ioctlPut64(fd: number, request: number, values: number[]): number;
  copyFileRange(
    fdIn: number,
    offIn: number[],
    fdOut: number,
    offOut: number[],
    len: number,
    flags: number,
  ): number;
  flock(fd: number, operation: number): number;
  /** fcntl with a struct flock the kernel reads and (F_OFD_GETLK) fills. */
  fcntlLock(fd: number, cmd: number, lock: FlockStruct): number;
  /** Absent when this libc has no preadv2. */
  preadv2?: (fd: number, buf: Uint8Array, offset: number, flags: number) => number;
  dup2(from: number, to: number): number;
  getxattr(path: string, name: string, value: Buffer, size: number): number;
  setxattr(path: string, name: string, value: Buffer, size: number, flags: number): number;
  errno(): number;
}

interface FlockStruct {
  l_type: number;
  l_whence: number;
  l_start: number;
  l_len: number;
  l_pid: number;
}

let libc: Libc | null | undefined;
let loadError = '';
let enabled = true;

/**
 * Turns the system calls off (false: every caller takes the portable fallback) or on again.
 * A switch for the whole process rather than an option per call: the native library is loaded
 * once and shared by every open file, and the switch exists to test and troubleshoot the
 * fallbacks (the CLI sets it from DISKPIPE_NO_NATIVE=1), not to mix both paths in one run.
 */
export function setNativeEnabled(on: boolean): void {
  // The library stays loaded: loading it again would define its koffi types twice (an error).
  enabled = on;
}

/** Whether system calls and system libraries may be used (setNativeEnabled). */
export function isNativeEnabled(): boolean {
  return enabled;
}

function load(): Libc | null {
  if (!enabled) return null;
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== 'linux') {
    loadError = `not on Linux (${process.platform})`;
    return libc;
  }
  try {
    const koffi = require('koffi');
    const lib = koffi.load('libc.so.6');
    const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');
    const fallocate = lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
    const ioctl = lib.func('int ioctl(int fd, unsigned long request, int arg)');
    const flock = lib.func('int flock(int fd, int operation)');
    const ioctlGet64 = lib.func('ioctl', 'int', [
      'int',
      'unsigned long',
      koffi.out(koffi.pointer('uint64_t')),
    ]);
    const ioctlPut64 = lib.func('ioctl', 'int', ['int', 'unsigned long', 'uint64_t *']);
    koffi.struct('diskpipe_flock', {
      l_type: 'short',
      l_whence: 'short',
      l_start: 'int64_t',
      l_len: 'int64_t',
      l_pid: 'int',
    });
    // fcntl is variadic; on Linux a pointer argument is passed the same way either way.
    const fcntlLock = lib.func('int fcntl(int fd, int cmd, _Inout_ diskpipe_flock *lock)');
    const dup2 = lib.func('int dup2(int oldfd, int newfd)');
    const getxattr = lib.func(
      'int64_t getxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)',
    );
    const setxattr = lib.func(
      'int setxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)',
    );
    const cfr = lib.func(
      'int64_t copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, _Inout_ int64_t *off_out, size_t len, unsigned int flags)',
    );
    libc = {
      preadv2: loadPreadv2(koffi, lib),
      lseek: (fd, offset, whence) => Number(lseek(fd, offset, whence)),
      fallocate: (fd, mode, offset, length) => fallocate(fd, mode, offset, length),
      ioctl: (fd, request, arg) => ioctl(fd, request, arg),
      ioctlGet64: (fd, request, out) => ioctlGet64(fd, request, out),
      ioctlPut64: (fd, request, values) => ioctlPut64(fd, request, values),
      copyFileRange: (a, oa, b, ob, len, flags) => Number(cfr(a, oa, b, ob, len, flags)),
      flock: (fd, operation) => flock(fd, operation),
      fcntlLock: (fd, cmd, lock) => fcntlLock(fd, cmd, lock),
      dup2: (from, to) => dup2(from, to),
      getxattr: (path, name, value, size) => Number(getxattr(path, name, value, size)),
      setxattr: (path, name, value, size, flags) => setxattr(path, name, value, size, flags),
      errno: () => koffi.errno(),
    };
  } catch (err) {
    loadError = `koffi unavailable: ${(err as Error).message}`;
  }
  return libc;
}

/** preadv2 (glibc 2.26+); the buffer is passed by pointer, so the kernel reads into it. */
function loadPreadv2(
  koffi: { struct(name: string, def: object): unknown },
  lib: { func(decl: string): (...args: unknown[]) => unknown },
): Libc['preadv2'] {
  try {
    koffi.struct('diskpipe_iovec', { base: 'void *', len: 'size_t' });
    const f = lib.func(
      'int64_t preadv2(int fd, const diskpipe_iovec *iov, int count, int64_t offset, int flags)',
    );
    return (fd, buf, offset, flags) =>
      Number(f(fd, [{ base: buf, len: buf.length }], 1, offset, flags));
  } catch {
    return undefined;
  }
}

/**
 * At the CLI's exit: koffi's exit-time fsync of stdout and stderr (see io/stdio-exit.ts) is
 * made harmless, if koffi was loaded at all (this never loads it).
 */
export function defuseStdioSyncAtExit(): void {
  if (libc) pointStdioFilesAtNull(libc.dup2);
}

const ACCESS_ACL = 'system.posix_acl_access';
const ENODATA = 61;
const EOPNOTSUPP = 95;

/**
 * Gives `to` the POSIX access ACL of `from` (the entries beyond the mode bits: `user:bob:rw-`).
 * 'none' when `from` has none or its filesystem has no ACLs; 'unsupported' without the native
 * layer. Throws when the ACL cannot be set on `to`.
 */
export function copyAccessAcl(from: string, to: string): 'copied' | 'none' | 'unsupported' {
  const c = load();
  if (!c) return 'unsupported';
  // The largest extended attribute Linux stores (XATTR_SIZE_MAX).
  const value = Buffer.alloc(64 * 1024);
  const n = c.getxattr(from, ACCESS_ACL, value, value.length);
  if (n < 0) {
    const e = c.errno();
    if (e === ENODATA || e === EOPNOTSUPP) return 'none';
    throw errnoError(`getxattr(${ACCESS_ACL})`, e);
  }
  if (c.setxattr(to, ACCESS_ACL, value, n, 0) !== 0) {
    throw errnoError(`setxattr(${ACCESS_ACL})`, c.errno());
  }
  return 'copied';
}

/** Which native path is in use (for `--version`-style diagnostics and tests). */
export function nativeStatus(): { native: boolean; reason: string } {
  if (!enabled) return { native: false, reason: 'disabled' };
  return load() ? { native: true, reason: 'koffi/libc' } : { native: false, reason: loadError };
}

export type SeekResult = number | 'eof' | 'unsupported';

/**
 * lseek(SEEK_DATA/SEEK_HOLE): the next data (or hole) offset at or after `offset`; 'eof' when
 * there is no more data; 'unsupported' when the system cannot tell (treat the file as data).
 */
export function seekDataHole(fd: number, offset: number, what: 'data' | 'hole'): SeekResult {
  const c = load();
  if (!c) return 'unsupported';
  const r = c.lseek(fd, offset, what === 'data' ? SEEK_DATA : SEEK_HOLE);
  if (r >= 0) return r;
  const e = c.errno();
  if (e === ENXIO) return 'eof';
  return 'unsupported';
}

function errnoError(op: string, errno: number): NodeJS.ErrnoException {
  const names: Record<number, string> = {
    1: 'EPERM',
    5: 'EIO',
    9: 'EBADF',
    13: 'EACCES',
    18: 'EXDEV',
    22: 'EINVAL',
    28: 'ENOSPC',
    95: 'EOPNOTSUPP',
    38: 'ENOSYS',
    25: 'ENOTTY',
    16: 'EBUSY',
    27: 'EFBIG',
  };
  const err: NodeJS.ErrnoException = new Error(`${op} failed: errno ${errno}`);
  err.code = names[errno] ?? `E${errno}`;
  err.errno = errno;
  return err;
}

const NOT_SUPPORTED = new Set([95, 38, 25, 22, 18, 1]); // EOPNOTSUPP ENOSYS ENOTTY EINVAL EXDEV EPERM

/**
 * fallocate punch-hole (KEEP_SIZE): deallocates a range so it reads as zeroes.
 * Returns false when the filesystem or platform cannot (the caller writes zeroes instead).
 */
export function punchHole(fd: number, offset: number, length: number): Promise<boolean> {
  return falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, 'punch hole');
}

/** punchHole of one block (≤ MAX_CALL_BYTES) in one call, for callers that cannot await. */
export function punchBlock(fd: number, offset: number, length: number): boolean {
  if (length > MAX_CALL_BYTES) throw new RangeError(`punchBlock of ${length} bytes`);
  nativeCallHook.onCall?.('punch hole', length);
  return fallocOnce(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, 'punch hole');
}

/** fallocate zero-range (KEEP_SIZE): zeroes a range efficiently; false when unsupported. */
export function zeroRange(fd: number, offset: number, length: number): Promise<boolean> {
  return falloc(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length, 'zero range');
}

async function falloc(
  fd: number,
  mode: number,
  offset: number,
  length: number,
  op: string,
): Promise<boolean> {
  if (!load()) return length === 0;
  // Unsupported shows on the first slice (nothing changed yet); a later failure throws.
  const done = await inSlices(op, offset, length, (off, len) =>
    fallocOnce(fd, mode, off, len, op) ? len : 0,
  );
  return done === length;
}

function fallocOnce(fd: number, mode: number, offset: number, length: number, op: string): boolean {
  const c = load();
  if (!c || length === 0) return length === 0;
  if (c.fallocate(fd, mode, offset, length) === 0) return true;
  const e = c.errno();
  if (NOT_SUPPORTED.has(e)) return false;
  throw errnoError(op, e);
}

/** ioctl(FICLONE): makes `dstFd` share all of `srcFd`'s blocks. False when not supported. */
export function ficlone(dstFd: number, srcFd: number): boolean {
  const c = load();
  if (!c) return false;
  if (c.ioctl(dstFd, FICLONE, srcFd) === 0) return true;
  const e = c.errno();
  if (NOT_SUPPORTED.has(e) || e === 9) return false;
  throw errnoError('FICLONE', e);
}

/**
 * copy_file_range for [offset, offset+length) between two files at the same offsets (the
 * kernel may reflink or copy server-side). Returns bytes copied, or -1 when unsupported
 * before any byte moved (the caller falls back to read+write).
 */
export async function copyFileRange(
  srcFd: number,
  dstFd: number,
  offset: number,
  length: number,
): Promise<number> {
  const c = load();
  if (!c) return -1;
  let unsupported = false;
  const done = await inSlices('copy_file_range', offset, length, (start, len) => {
    let moved = 0;
    while (moved < len) {
      const n = c.copyFileRange(srcFd, [start + moved], dstFd, [start + moved], len - moved, 0);
      if (n > 0) {
        moved += n;
        continue;
      }
      if (n === 0) break; // source ended early
      const e = c.errno();
      if (start === offset && moved === 0 && NOT_SUPPORTED.has(e)) {
        unsupported = true;
        break;
      }
      throw errnoError('copy_file_range', e);
    }
    return moved;
  });
  return unsupported ? -1 : done;
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/**
 * flock(LOCK_EX|LOCK_NB): true when this process now holds the lock, false when another holds
 * it, 'unsupported' without the native layer. The kernel drops the lock when the process dies.
 */
export function tryFlock(fd: number): boolean | 'unsupported' {
  const c = load();
  if (!c) return 'unsupported';
  if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = c.errno();
  if (e === EWOULDBLOCK) return false;
  throw errnoError('flock', e);
}

const F_OFD_GETLK = 36;
const F_OFD_SETLK = 37;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
const EACCES = 13;

/**
 * Takes a shared open-file-description lock on one byte (released when the file closes):
 * true when taken, false when another open file holds an exclusive lock there.
 */
export function ofdShareByte(fd: number, byte: number): boolean | 'unsupported' {
  const c = load();
  if (!c) return 'unsupported';
  const lock = { l_type: F_RDLCK, l_whence: 0, l_start: byte, l_len: 1, l_pid: 0 };
  if (c.fcntlLock(fd, F_OFD_SETLK, lock) === 0) return true;
  const e = c.errno();
  if (e === EAGAIN || e === EACCES) return false;
  if (e === 22) return 'unsupported'; // EINVAL: a kernel without OFD locks
  throw errnoError('fcntl(F_OFD_SETLK)', e);
}

/** Whether another open file holds any lock on one byte (F_OFD_GETLK). */
export function ofdByteLocked(fd: number, byte: number): boolean | 'unsupported' {
  const c = load();
  if (!c) return 'unsupported';
  const lock = { l_type: F_WRLCK, l_whence: 0, l_start: byte, l_len: 1, l_pid: 0 };
  if (c.fcntlLock(fd, F_OFD_GETLK, lock) !== 0) {
    const e = c.errno();
    if (e === 22) return 'unsupported';
    throw errnoError('fcntl(F_OFD_GETLK)', e);
  }
  return lock.l_type !== F_UNLCK;
}

const RWF_NOWAIT = 0x08;
const EAGAIN = 11;

/**
 * preadv2(RWF_NOWAIT): reads what the page cache holds right now, on this thread, without
 * waiting for the disk (and without a thread-pool round trip). Returns the bytes read (0 at the
 * end of the file; fewer than asked when only part is cached), 'again' when the data is not
 * cached, 'unsupported' when the system or filesystem cannot (read the usual way then).
 */
export function readCached(
  fd: number,
  buf: Uint8Array,
  offset: number,
): number | 'again' | 'unsupported' {
  const pread = load()?.preadv2;
  if (!pread) return 'unsupported';
  const n = pread(fd, buf, offset, RWF_NOWAIT);
  if (n >= 0) return n;
  return libc!.errno() === EAGAIN ? 'again' : 'unsupported';
}

/** ioctl(BLKGETSIZE64): a block device's size in bytes; 'unsupported' without the native layer. */
export function blockDeviceSize(fd: number): number | 'unsupported' {
  const c = load();
  if (!c) return 'unsupported';
  const out = [0];
  if (c.ioctlGet64(fd, BLKGETSIZE64, out) === 0) return Number(out[0]);
  const e = c.errno();
  if (NOT_SUPPORTED.has(e)) return 'unsupported';
  throw errnoError('BLKGETSIZE64', e);
}

/**
 * ioctl(BLKZEROOUT): makes a 512-byte-aligned range of a block device read as zeroes (the
 * kernel uses WRITE ZEROES or writes zero pages itself; unlike BLKDISCARD the zeroes are
 * guaranteed). False when it cannot (the caller writes zeroes).
 */
export async function blockZeroOut(fd: number, offset: number, length: number): Promise<boolean> {
  const c = load();
  if (!c) return length === 0;
  const done = await inSlices('BLKZEROOUT', offset, length, (start, len) => {
    if (c.ioctlPut64(fd, BLKZEROOUT, [start, len]) === 0) return len;
    const e = c.errno();
    if (start === offset && NOT_SUPPORTED.has(e)) return 0;
    throw errnoError('BLKZEROOUT', e);
  });
  return done === length;
}
