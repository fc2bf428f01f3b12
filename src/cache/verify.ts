/**
 * `cache verify`: recompute each blob's content digest and compare it with its name. A blob
 * that fails is quarantined (a bad mark beside it): disk create and pull --offline refuse it
 * until a pull replaces it; a blob that passes loses an old mark.
 */
import { lstat } from 'node:fs/promises';
import { RawImage } from '../formats/raw.js';
import type { ProgressListener } from '../image/types.js';
import { LocalFile } from '../io/file.js';
import { acquireLock } from '../io/lock.js';
import { checksumImage } from '../ops/checksum/index.js';
import { blobLockPath } from './maintenance.js';
import type { CacheEntry, CacheIndex } from './records.js';

export interface VerifyResult {
  entry: CacheEntry;
  ok: boolean;
  actual?: string;
  problem?: string;
}

export interface VerifyOptions {
  signal?: AbortSignal | undefined;
  /** Phase `checksum`. */
  onProgress?: ProgressListener | undefined;
}

export async function verifyEntry(
  index: CacheIndex,
  entry: CacheEntry,
  opts: VerifyOptions = {},
): Promise<VerifyResult> {
  const digest = entry.blob.contentDigest;
  const path = index.layout.blobPath(digest);
  const checked = await check(path, entry, opts);
  // Record the verdict under the entry's lock, for the file that was checked (a pull may have
  // replaced it meanwhile).
  const lock = await acquireLock(blobLockPath(index, digest));
  try {
    const st = await lstat(path).catch(() => undefined);
    if (st && st.ino === checked.ino) {
      if (checked.result.ok) await index.clearBad(digest);
      else await index.markBad(digest, checked.result.problem ?? 'mismatch');
    }
  } finally {
    await lock.release();
  }
  return { entry, ...checked.result };
}

async function check(
  path: string,
  entry: CacheEntry,
  opts: VerifyOptions,
): Promise<{ ino: number | undefined; result: Omit<VerifyResult, 'entry'> }> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return { ino: undefined, result: { ok: false, problem: 'data file is missing' } };
  const fail = (problem: string) => ({ ino: st.ino, result: { ok: false, problem } });
  if (st.isSymbolicLink()) return fail('data file is a symbolic link');
  if (!st.isFile()) return fail('data file is not a regular file');
  if (st.size !== entry.blob.virtualSize)
    return fail(`data file is ${st.size} bytes, record says ${entry.blob.virtualSize}`);
  const image = new RawImage(await LocalFile.open(path, 'r'));
  try {
    const { digest } = await checksumImage(image, {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    return digest === entry.blob.contentDigest
      ? { ino: st.ino, result: { ok: true, actual: digest } }
      : { ino: st.ino, result: { ok: false, actual: digest, problem: 'content digest mismatch' } };
  } finally {
    await image.close();
  }
}
