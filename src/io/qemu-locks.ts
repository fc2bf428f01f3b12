/**
 * qemu's image locks, so that diskpipe never edits an image in place while a VM, qemu-nbd or
 * qemu-img has it open (and they refuse to open it while diskpipe edits it). qemu takes shared
 * OFD locks on byte 100 + p for each permission p it holds and on byte 200 + p for each it
 * refuses to share (p: 0 consistent read, 1 write, 3 resize); see docs/devel/locking in qemu.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { IoError, withOptionHint } from '../errors.js';
import { ofdByteLocked, ofdShareByte } from './native.js';
import { type LockedRange, lockedRanges } from './proc-locks.js';

const PERM_BASE = 100;
const SHARED_BASE = 200;
const READ = 0;
const WRITE = 1;
const RESIZE = 3;
/** Bytes of /proc/locks read before asking fcntl instead (some 600 locks on the machine). */
const SHORT_PROC_LOCKS = 32 * 1024;

/**
 * Marks `fd` as written and resized by us (held until the file closes), then refuses when
 * another program writes or resizes the image, or does not let others write or resize it.
 * Without the native layer there is no check.
 */
export function lockForInPlaceEdit(fd: number, name: string): void {
  const ours = [PERM_BASE + READ, PERM_BASE + WRITE, PERM_BASE + RESIZE];
  const unshared = [SHARED_BASE + WRITE, SHARED_BASE + RESIZE];
  const theirs = [
    PERM_BASE + WRITE,
    PERM_BASE + RESIZE,
    SHARED_BASE + READ,
    SHARED_BASE + WRITE,
    SHARED_BASE + RESIZE,
  ];
  let busy = false;
  for (const byte of [...ours, ...unshared]) {
    const took = ofdShareByte(fd, byte);
    if (took === 'unsupported') return;
    if (!took) busy = true;
  }
  // Locks of this open file are never reported here, only other programs' locks.
  if (busy || theirs.some((byte) => ofdByteLocked(fd, byte) === true)) {
    throw new IoError(
      `${name}: the image is in use by another program (a VM, qemu-nbd or diskpipe holds its lock); stop it first`,
    );
  }
}

/**
 * Marks `fd` as read by us and not shared for writing or resizing, as qemu-nbd -r does, so
 * that in-place editors (qemu-img commit/resize, diskpipe resize/rebase/commit) refuse while
 * it is held; other readers still share the image. Refuses an image another program is writing
 * or resizing. Without the native layer there is no check.
 */
export function lockForSharedRead(fd: number, name: string): void {
  let busy = false;
  for (const byte of [PERM_BASE + READ, SHARED_BASE + WRITE, SHARED_BASE + RESIZE]) {
    const took = ofdShareByte(fd, byte);
    if (took === 'unsupported') return;
    if (!took) busy = true;
  }
  const writers = [PERM_BASE + WRITE, PERM_BASE + RESIZE];
  if (busy || writers.some((byte) => ofdByteLocked(fd, byte) === true)) {
    throw new IoError(
      `${name}: the image is in use by another program (a VM, qemu-nbd or diskpipe is writing it); stop it first`,
    );
  }
}

/**
 * Refuses to read an image that another program writes or resizes (a running VM, qemu-nbd,
 * `diskpipe serve --writable`): what is read would mix old and new metadata and data. qemu-img
 * refuses the same without -U (--force-share). Nothing is locked by this check; without the
 * native layer there is no check.
 */
export function refuseWritten(fd: number, name: string): void {
  const writers = [PERM_BASE + WRITE, PERM_BASE + RESIZE];
  const lockedIn = (held: LockedRange[]) =>
    held.some((r) => writers.some((byte) => r.start <= byte && byte <= r.end));
  // A short /proc/locks first: asking fcntl would load the native layer for every `info`. A
  // long one (a machine holding thousands of locks took seconds to read) goes to fcntl, and
  // is read whole only without the native layer. Both see the same OFD and POSIX locks.
  let written: boolean;
  const held = lockedRanges(fd, SHORT_PROC_LOCKS);
  if (held) written = lockedIn(held);
  else {
    const asked = writers.map((byte) => ofdByteLocked(fd, byte));
    const all = asked.includes('unsupported') ? lockedRanges(fd) : undefined;
    written = all ? lockedIn(all) : asked.includes(true);
  }
  if (written) {
    throw withOptionHint(
      new IoError(
        `${name}: the image is being written by another program (a VM, qemu-nbd or diskpipe holds its write lock), so what it holds can change while it is read; stop that program`,
      ),
      { option: 'force-share', advice: ', or read anyway with -U (--force-share)' },
    );
  }
}

/**
 * Refuses to replace a file that a VM or qemu-nbd is writing: renaming a new file over it
 * would leave that program writing into a deleted file, and its writes would be lost.
 */
export async function refuseReplacingInUse(path: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch {
    return; // not readable: nothing to check, and creating the output says why it fails
  }
  try {
    const writers = [PERM_BASE + WRITE, PERM_BASE + RESIZE];
    if (writers.some((byte) => ofdByteLocked(handle.fd, byte) === true)) {
      throw new IoError(
        `cannot write ${path}: the image is in use by another program (a VM, qemu-nbd or diskpipe is writing it)`,
      );
    }
  } finally {
    await handle.close();
  }
}
