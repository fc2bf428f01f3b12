/**
 * A read lease (fcntl F_SETLEASE, F_RDLCK) on a file that is read through a mapping. A file
 * truncated under a mapping ends the process with SIGBUS, and no lock stops another program
 * from truncating it; a lease makes Linux hold that program back instead (its truncate, or its
 * open for writing, waits; one that opens with O_NONBLOCK gets EAGAIN) and tell the holder with
 * SIGIO. The holder stops mapping, lets the mapped reads in flight finish and releases the
 * lease; the truncation then goes ahead, and plain reads see the file end and fail cleanly.
 * Linux takes the lease back by itself after /proc/sys/fs/lease-break-time (45 s by default).
 *
 * A lease needs the file's owner (or CAP_LEASE), no writer may have the file open, and it is
 * taken on the main thread only (workers cannot listen for SIGIO); without one, the caller
 * does not map.
 */
import { isMainThread } from 'node:worker_threads';
import { libcBinding } from './system-lib.js';

const F_SETLEASE = 1024;
const F_GETLEASE = 1025;
const F_RDLCK = 0;
const F_UNLCK = 2;

export interface ReadLease {
  /** Another program asked to write or truncate the file (onBreak has run). */
  readonly broken: boolean;
  /** Gives the lease up (idempotent); the waiting program goes ahead. */
  release(): void;
}

type Fcntl = (fd: number, cmd: number, arg: number) => number;

const bind = libcBinding((sys): Fcntl => {
  // fcntl is variadic; an int argument is passed the same way either way on Linux.
  const f = sys.lib.func('int fcntl(int fd, int cmd, int arg)');
  return (fd, cmd, arg) => Number(f(fd, cmd, arg));
});

interface Held {
  fd: number;
  broken: boolean;
  onBreak: () => void;
}

const held = new Set<Held>();
let listening = false;

/** SIGIO says some lease is breaking; F_GETLEASE says which (it no longer reads F_RDLCK). */
function onSigio(): void {
  const f = bind();
  if (!f) return;
  for (const h of held) {
    if (h.broken || f(h.fd, F_GETLEASE, 0) === F_RDLCK) continue;
    h.broken = true;
    h.onBreak();
  }
}

/**
 * Takes a read lease on `fd` (opened read-only); undefined when the file cannot be leased (no
 * native layer, not the owner, open for writing elsewhere, a filesystem without leases).
 * `onBreak` runs on the event loop when another program wants to write or truncate the file:
 * it must stop new mapped reads and release the lease once those in flight are done.
 */
export function takeReadLease(fd: number, onBreak: () => void): ReadLease | undefined {
  // A worker thread cannot listen for signals: the lease's SIGIO would end the process.
  if (!isMainThread) return undefined;
  const f = bind();
  if (!f) return undefined;
  // Listening first: SIGIO's default action ends the process. The listener stays for the
  // process's life (removing it would restore that default while a signal may be on its way).
  if (!listening) {
    process.on('SIGIO', onSigio);
    listening = true;
  }
  if (f(fd, F_SETLEASE, F_RDLCK) !== 0) return undefined;
  const h: Held = { fd, broken: false, onBreak };
  held.add(h);
  return {
    get broken() {
      return h.broken;
    },
    release() {
      if (!held.delete(h)) return;
      f(fd, F_SETLEASE, F_UNLCK);
    },
  };
}
