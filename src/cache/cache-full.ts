/**
 * A pull that runs out of space in the cache says so: the kernel's ENOSPC named only the
 * internal temporary file it was writing (tmp/.convert.raw.diskpipe-<pid>-….tmp), which tells
 * a user neither which filesystem is full nor what to do about it.
 */
import { DiskpipeError, ioError, withMessage } from '../errors.js';

/** True for ENOSPC, bare or wrapped (ioError keeps the Node error as `cause`). */
export function isNoSpace(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string }; message?: unknown };
  return (
    e?.code === 'ENOSPC' || e?.cause?.code === 'ENOSPC' || /\bENOSPC\b/.test(String(e?.message))
  );
}

/**
 * `err` unchanged unless it is ENOSPC on a file inside the cache at `root`; then the same error
 * (class and code kept) saying the cache's filesystem is full and how to make room. A full
 * staging directory elsewhere (DISKPIPE_TMPDIR) keeps its own message, which names it.
 */
export function cacheFull(err: unknown, root: string, url: string): unknown {
  if (!isNoSpace(err)) return err;
  const message = String((err as Error)?.message);
  if (!message.includes(`${root}/`)) return err;
  const coded = err instanceof DiskpipeError ? err : ioError(err, root);
  return withMessage(
    coded,
    `the cache's filesystem is full (ENOSPC: no space left on device in ${root}) while pulling ${url}; free space there, remove entries with 'diskpipe cache prune' or 'cache rm', or use --cache-dir on a larger filesystem`,
  );
}
