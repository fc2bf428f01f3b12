/**
 * copy_file_range(2) off the main thread: each call is one thread-pool job (koffi's async
 * call), so a 2 MiB request's data reaches the target in one round trip instead of eight
 * 256 KiB write jobs, and no byte crosses into user space on the way.
 *
 * Why it does not bring back the large-folio system time io/file.ts avoids: on a filesystem
 * without reflinks (ext4) the kernel copies through a pipe, writing at most a pipe's worth
 * (64 KiB) per step, so the target's page cache is built from small folios. Measured on the
 * rootfs bench (728 MB of data, medians of 5): 2,791 write jobs → 360 copy calls, voluntary
 * context switches 3,764 → 1,986.
 */
import { getSystemErrorName } from 'node:util';
import { isNativeEnabled } from './native.js';
import { type LibraryHandle, libcBinding } from './system-lib.js';

/** errno values that mean "this pair of files cannot be copied this way" (nothing moved). */
const UNSUPPORTED = new Set([95, 38, 22, 18, 1, 9]); // EOPNOTSUPP ENOSYS EINVAL EXDEV EPERM EBADF

/** Largest single call: keeps one thread-pool job short (other reads and writes wait behind it). */
const MAX_CALL = 8 * 1024 * 1024;

type Call = ReturnType<LibraryHandle['func']>;

interface Binding {
  call: Call;
  errno: () => number;
}

const bind = libcBinding(
  (sys): Binding => ({
    // Offsets are passed in and not read back: the return value says how far the call got.
    call: sys.lib.func(
      'int64_t copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)',
    ),
    errno: () => sys.koffi.errno(),
  }),
);

function once(b: Binding, src: number, dst: number, offset: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => {
    b.call.async(src, [offset], dst, [offset], len, 0, (err: unknown, n: number | bigint) => {
      if (err) reject(err);
      else resolve(Number(n));
    });
  });
}

/** An error like Node's fs errors (code, errno), so ioError() names it (EFBIG, not E27). */
function errnoError(errno: number): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`copy_file_range failed: errno ${errno}`);
  err.errno = errno;
  let code: string;
  try {
    code = getSystemErrorName(-errno);
  } catch {
    code = `E${errno}`; // not an errno libuv knows
  }
  err.code = code.startsWith('E') ? code : `E${errno}`;
  return err;
}

/**
 * Copies [offset, offset+length) of `srcFd` to the same offsets of `dstFd` in the kernel.
 * Returns the bytes copied (fewer than `length` only when the source ends early), or
 * 'unsupported' when the kernel refuses before any byte moved (other filesystem, not a
 * regular file, no native layer): the caller writes the bytes itself then. Throws on a real
 * error (ENOSPC, EIO).
 */
export async function copyRangeAsync(
  srcFd: number,
  dstFd: number,
  offset: number,
  length: number,
): Promise<number | 'unsupported'> {
  const b = isNativeEnabled() ? bind() : null;
  if (!b) return 'unsupported';
  let done = 0;
  while (done < length) {
    const len = Math.min(length - done, MAX_CALL);
    let n = await once(b, srcFd, dstFd, offset + done, len);
    if (n < 0) {
      // errno is not carried back from the pool thread: the same call again, here, says why
      // (and moves the bytes if the failure was passing).
      n = Number(b.call(srcFd, [offset + done], dstFd, [offset + done], len, 0));
      if (n < 0) {
        const e = b.errno();
        if (done === 0 && UNSUPPORTED.has(e)) return 'unsupported';
        throw errnoError(e);
      }
    }
    if (n === 0) break; // the source ended
    done += n;
  }
  return done;
}
