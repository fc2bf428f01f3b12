import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ioError } from '../errors.js';

/**
 * `.<name>.diskpipe-<pid>-<hex>.tmp` beside `path`: the owner's pid in the name lets a later
 * process remove the file as soon as its owner is dead.
 */
export function pidTemporaryName(path: string, hex = randomBytes(4).toString('hex')): string {
  return join(dirname(path), `.${basename(path)}.diskpipe-${process.pid}-${hex}.tmp`);
}

/** The pid in a temporary file name made by pidTemporaryName (or atomic.ts), if any. */
export function temporaryOwner(name: string): number | undefined {
  const m = /\.diskpipe-(\d+)-[0-9a-f]+\.tmp$/.exec(name);
  const pid = m ? Number(m[1]) : Number.NaN;
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Whether a process exists (EPERM: it exists but belongs to someone else). */
export function pidIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Writes JSON durably: temporary file, fsync, rename, fsync of the directory. */
export async function writeJsonDurably(path: string, value: unknown): Promise<void> {
  const tmp = pidTemporaryName(path);
  try {
    const h = await open(tmp, 'w', 0o644);
    try {
      await h.writeFile(`${JSON.stringify(value, null, 2)}\n`);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, path);
    await syncDirectory(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw ioError(err, `cannot write ${path}`);
  }
}

/** Reads a JSON file; undefined when it does not exist. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, `cannot read ${path}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined; // a torn or foreign file is treated as absent; writers never leave one
  }
}

export async function syncDirectory(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    await h.close();
  }
}
