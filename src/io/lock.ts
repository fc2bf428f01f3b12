/**
 * Cross-process exclusive locks on a lock file. flock() where the native layer runs (released
 * by the kernel when a process dies, even by kill -9); elsewhere an O_EXCL file holding the
 * owner's pid, taken over when that process no longer exists.
 */
import { constants } from 'node:fs';
import { type FileHandle, open, readFile, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DiskpipeError, ioError } from '../errors.js';
import { pidIsAlive } from './json-file.js';
import { tryFlock } from './native.js';

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
    if (Date.now() >= deadline) throw new DiskpipeError('IO', `timed out waiting for lock ${path}`);
    await sleep(delay);
  }
}

/** Takes the lock if it is free right now; undefined when another process holds it. */
export function tryLockNow(path: string): Promise<Lock | undefined> {
  return tryLock(path);
}

async function tryLock(path: string): Promise<Lock | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (err) {
    throw ioError(err, `cannot create lock ${path}`);
  }
  const got = tryFlock(handle.fd);
  if (got === true) return { release: () => handle.close() };
  await handle.close();
  if (got === false) return undefined;
  return tryPidLock(`${path}.pid`);
}

async function tryPidLock(path: string): Promise<Lock | undefined> {
  try {
    const h = await open(path, 'wx');
    await h.writeFile(String(process.pid));
    await h.close();
    return { release: () => unlink(path).catch(() => {}) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw ioError(err, `cannot create lock ${path}`);
  }
  const owner = Number(await readFile(path, 'utf8').catch(() => ''));
  if (!Number.isInteger(owner) || owner <= 0 || !pidIsAlive(owner))
    await unlink(path).catch(() => {});
  return undefined;
}
