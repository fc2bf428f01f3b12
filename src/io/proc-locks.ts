/**
 * The byte ranges other open files have locked in a file, read from Linux's /proc/locks. It
 * needs no system call Node lacks, so a reading command checks qemu's image locks without
 * loading the native layer (koffi), which `info` and `map` of a small image never pay for.
 * /proc/locks lists every lock on the machine, and the kernel makes each read of it walk the
 * list from its start (one page per read), so a caller may stop early: see `maxBytes`.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { splitDeviceNumber } from './device-number.js';

export interface LockedRange {
  start: number;
  /** Inclusive; Infinity for "to the end of the file". */
  end: number;
}

/**
 * Ranges locked in the file open as `fd` (held locks only); undefined without /proc/locks, or
 * when it is longer than `maxBytes` (the machine holds many locks: asking fcntl is cheaper).
 */
export function lockedRanges(
  fd: number,
  maxBytes = Number.POSITIVE_INFINITY,
): LockedRange[] | undefined {
  const text = readProcLocks(maxBytes);
  if (text === undefined) return undefined;
  const st = fstatSync(fd, { bigint: true });
  // /proc/locks prints major and minor in hex, then the inode.
  const { major, minor } = splitDeviceNumber(st.dev);
  const out: LockedRange[] = [];
  for (const line of text.split('\n')) {
    // "6: OFDLCK ADVISORY  READ -1 fe:00:2146357 100 101"; "6: -> ..." only waits for a lock.
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f[1] === '->') continue;
    // Only byte-range locks (fcntl: OFD as qemu takes them, or POSIX) are what F_OFD_GETLK
    // would see; a whole-file flock(1) or a lease says nothing about qemu's bytes.
    if (f[1] !== 'OFDLCK' && f[1] !== 'POSIX') continue;
    const id = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/i.exec(f[5]!);
    if (!id || Number.parseInt(id[1]!, 16) !== major || Number.parseInt(id[2]!, 16) !== minor)
      continue;
    if (BigInt(id[3]!) !== st.ino) continue;
    out.push({
      start: Number(f[6]),
      end: f[7] === 'EOF' ? Number.POSITIVE_INFINITY : Number(f[7]),
    });
  }
  return out;
}

/** The text of /proc/locks; undefined when unreadable or longer than `maxBytes`. */
function readProcLocks(maxBytes: number): string | undefined {
  let fd: number;
  try {
    fd = openSync('/proc/locks', 'r');
  } catch {
    return undefined;
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    // Each read returns at most a page or so, whatever the buffer's size.
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      total += n;
      if (total > maxBytes) return undefined;
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
