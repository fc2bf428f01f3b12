/**
 * Temporary files inside the cache. Each carries its owner's pid in its name, so any later
 * pull or prune can tell a file still being written from one a killed process left behind
 * (process.kill(pid, 0) → ESRCH) and remove the latter at once instead of after a day.
 */
import { randomBytes } from 'node:crypto';
import { readdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pidIsAlive, pidTemporaryName, temporaryOwner } from '../io/json-file.js';
import { tryLockNow } from '../io/lock.js';
import type { CacheLayout } from './layout.js';

export { pidIsAlive };

/** A pid-bearing temporary name beside `path` (same directory, so a rename is atomic). */
export function cacheTemporaryName(path: string): string {
  return pidTemporaryName(join(dirname(path), basename(path)), randomBytes(4).toString('hex'));
}

export interface SweepResult {
  /** Temporary files of dead owners, and partial downloads no live pull holds. */
  files: string[];
  bytes: number;
}

/**
 * Finds (and unless `dryRun` removes) temporary files whose owner is dead. With `parts`, also
 * partial downloads whose URL lock is free (prune frees them; a pull keeps them for resuming).
 */
export async function sweepTemporaries(
  layout: CacheLayout,
  opts: { parts?: boolean; dryRun?: boolean } = {},
): Promise<SweepResult> {
  const dirs = [layout.tmpDir, layout.recordsDir, layout.blobsDir];
  for (const name of await readdir(layout.pinsDir).catch(() => [] as string[]))
    dirs.push(join(layout.pinsDir, name));
  const out: SweepResult = { files: [], bytes: 0 };
  const take = async (path: string) => {
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return;
    if (
      !opts.dryRun &&
      (await unlink(path).then(
        () => false,
        () => true,
      ))
    )
      return;
    out.files.push(path);
    out.bytes += st.blocks * 512;
  };
  for (const dir of dirs) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const owner = temporaryOwner(name);
      if (owner !== undefined && !pidIsAlive(owner)) await take(join(dir, name));
    }
  }
  if (opts.parts) {
    const names = await readdir(layout.tmpDir).catch(() => [] as string[]);
    for (const name of names) {
      const m = /^([0-9a-f]{64})\.part(?:\.json)?$/.exec(name);
      if (!m || (name.endsWith('.json') && names.includes(`${m[1]}.part`))) continue;
      // A live pull of that URL holds its lock: leave its part alone.
      const lock = await tryLockNow(layout.lockPath(`url-${m[1]}`));
      if (!lock) continue;
      try {
        await take(join(layout.tmpDir, name));
        if (!name.endsWith('.json')) await take(join(layout.tmpDir, `${name}.json`));
      } finally {
        await lock.release();
      }
    }
  }
  // Lock files nobody holds (earlier versions kept one per disk path ever made): taking one
  // and letting go removes it (io/lock.ts); a held one is skipped.
  if (opts.parts && !opts.dryRun) {
    for (const name of await readdir(layout.locksDir).catch(() => [] as string[])) {
      if (!name.endsWith('.lock')) continue;
      // One that cannot be opened for writing (a read-only cache) is left as it is.
      const lock = await tryLockNow(join(layout.locksDir, name)).catch(() => undefined);
      await lock?.release();
    }
  }
  return out;
}
