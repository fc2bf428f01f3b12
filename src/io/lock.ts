/**
 * Cross-process exclusive locks on a lock file. flock() where the native layer runs (released
 * by the kernel when a process dies, even by kill -9); elsewhere an O_EXCL file holding the
 * owner's pid, taken over when that process no longer exists.
 *
 * The rule that lets a holder delete its lock file (one per disk path ever made piled up in
 * the cache's locks/): a holder unlinks the file before it lets go, and a lock counts only if
 * the path still names the file that was locked once flock succeeds. A process that opened the
 * file just before it was unlinked locks a file nobody else can reach, sees that, and retries.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, link, open, stat, unlink, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { IoError, ioError } from '../errors.js';
import { pidIsAlive } from './json-file.js';
import { nativeStatus, tryFlock } from './native.js';

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  /** Give up after this long (default: wait forever, as a second pull waits for the first). */
  timeoutMs?: number;
  /** Called once if the lock is busy (e.g. to print "waiting for another diskpipe"). */
  onWait?: () => void;
}

export async function acquireLock(path: string, opts: LockOptions = {}): Promise<Lock> {
  const deadline =
    opts.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + opts.timeoutMs;
  let waited = false;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const lock = await tryLock(path);
    if (lock) return lock;
    if (!waited) opts.onWait?.();
    waited = true;
    if (Date.now() >= deadline) throw new IoError(`timed out waiting for lock ${path}`);
    await sleep(delay);
  }
}

/** Takes the lock if it is free right now; undefined when another process holds it. */
export function tryLockNow(path: string): Promise<Lock | undefined> {
  return tryLock(path);
}

async function tryLock(path: string): Promise<Lock | undefined> {
  // Without flock the lock file would only be made and left behind.
  if (!nativeStatus().native) return tryPidLock(`${path}.pid`);
  for (;;) {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (err) {
      throw ioError(err, `cannot create lock ${path}`);
    }
    const got = tryFlock(handle.fd);
    if (got === true) {
      if (await stillNamed(handle, path)) return { release: releaseFile(handle, path) };
      await handle.close(); // its holder removed it meanwhile: lock the new one
      continue;
    }
    await handle.close();
    if (got === false) return undefined;
    return tryPidLock(`${path}.pid`);
  }
}

/** Whether `path` is still the file `handle` has open (not unlinked or replaced). */
async function stillNamed(handle: FileHandle, path: string): Promise<boolean> {
  const [held, named] = await Promise.all([handle.stat(), stat(path).catch(() => undefined)]);
  return named !== undefined && named.ino === held.ino && named.dev === held.dev;
}

/**
 * Unlinks while still locked (see the rule above), then lets go. Once only: a second unlink
 * could remove the file the next holder has locked since.
 */
function releaseFile(handle: FileHandle, path: string): () => Promise<void> {
  let released: Promise<void> | undefined;
  return () => {
    released ??= unlink(path)
      .catch(() => {})
      .then(() => handle.close());
    return released;
  };
}

/**
 * The lock is a file holding its owner's pid. It gets its name only once the pid is in it
 * (link fails if the name exists): a waiter that read a just-made, still empty lock file took
 * it for a dead owner's and removed it, and a third process then held the lock too.
 */
async function tryPidLock(path: string): Promise<Lock | undefined> {
  const mine = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(mine, String(process.pid), { flag: 'wx' });
  } catch (err) {
    throw ioError(err, `cannot create lock ${path}`);
  }
  try {
    await link(mine, path);
    const { ino, dev } = await stat(mine);
    return { release: () => unlinkIfSame(path, ino, dev) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A filesystem without hard links (FAT): create the name itself, pid written after.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS') return createPidLock(path);
    if (code !== 'EEXIST') throw ioError(err, `cannot create lock ${path}`);
  } finally {
    await unlink(mine).catch(() => {});
  }
  await removeIfStale(path);
  return undefined;
}

async function createPidLock(path: string): Promise<Lock | undefined> {
  try {
    const h = await open(path, 'wx');
    await h.writeFile(String(process.pid));
    const { ino, dev } = await h.stat();
    await h.close();
    return { release: () => unlinkIfSame(path, ino, dev) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw ioError(err, `cannot create lock ${path}`);
  }
  await removeIfStale(path);
  return undefined;
}

/** Removes a lock file whose owner is gone, unless it was replaced meanwhile (a new owner's). */
async function removeIfStale(path: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch {
    return; // released meanwhile: the caller tries again
  }
  try {
    const [text, held] = await Promise.all([handle.readFile('utf8'), handle.stat()]);
    const owner = Number(text);
    if (Number.isInteger(owner) && owner > 0 && pidIsAlive(owner)) return;
    await unlinkIfSame(path, held.ino, held.dev);
  } finally {
    await handle.close();
  }
}

async function unlinkIfSame(path: string, ino: number, dev: number): Promise<void> {
  const named = await stat(path).catch(() => undefined);
  if (named?.ino === ino && named.dev === dev) await unlink(path).catch(() => {});
}
