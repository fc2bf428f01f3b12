import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ioError } from '../errors.js';
import { temporaryNameFor } from './atomic.js';

/** Writes JSON durably: temporary file, fsync, rename, fsync of the directory. */
export async function writeJsonDurably(path: string, value: unknown): Promise<void> {
  const tmp = temporaryNameFor(path);
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
