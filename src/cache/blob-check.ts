/**
 * The cheap checks made before a blob is handed out (disk create, pull --offline, a cache
 * hit): opened without following symlinks, a regular file of the recorded size, and not
 * quarantined by `cache verify`. The full digest check is `cache verify`'s job.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { CacheError } from '../errors.js';
import type { BlobRecord, CacheIndex } from './records.js';

/** What is wrong with a blob's data file, or undefined when it may be handed out. */
export async function blobProblem(
  index: CacheIndex,
  blob: BlobRecord,
): Promise<string | undefined> {
  const digest = blob.contentDigest;
  const bad = await index.badMark(digest);
  if (bad) return `cache verify found it corrupt (${bad.problem})`;
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(index.layout.blobPath(digest), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ELOOP'
      ? 'its data file is a symbolic link'
      : `its data file cannot be opened (${code})`;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return 'its data file is not a regular file';
    if (st.size !== blob.virtualSize)
      return `its data file is ${st.size} bytes, the record says ${blob.virtualSize}`;
    return undefined;
  } finally {
    await handle.close();
  }
}

/** Throws a clear error when the blob may not be handed out. */
export async function checkBlob(index: CacheIndex, blob: BlobRecord): Promise<void> {
  const problem = await blobProblem(index, blob);
  if (problem) {
    throw new CacheError(
      `cache entry ${blob.contentDigest.slice(0, 12)} is not usable: ${problem}; pull it again to repair it`,
    );
  }
}
