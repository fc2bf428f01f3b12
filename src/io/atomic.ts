/**
 * Outputs are written under a temporary name beside the destination and renamed into place
 * only when complete, so an existing file is never truncated by a failed or interrupted run.
 */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ioError } from '../errors.js';

const pending = new Set<string>();

export function temporaryNameFor(dest: string): string {
  return join(
    dirname(dest),
    `.${basename(dest)}.diskpipe-${process.pid}-${randomBytes(4).toString('hex')}.tmp`,
  );
}

/** Runs `fn` on a temporary path and renames it to `dest` when it succeeds; removes it otherwise. */
export async function writeAtomically<T>(
  dest: string,
  fn: (tmp: string) => Promise<T>,
): Promise<T> {
  const tmp = temporaryNameFor(dest);
  pending.add(tmp);
  try {
    const result = await fn(tmp);
    try {
      await rename(tmp, dest);
    } catch (err) {
      throw ioError(err, `cannot rename output to ${dest}`);
    }
    return result;
  } finally {
    if (pending.delete(tmp)) await unlink(tmp).catch(() => {});
  }
}

/** Removes every temporary output still in progress (signal handlers; synchronous on purpose). */
export function removeTemporaryOutputs(): void {
  for (const tmp of pending) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
  pending.clear();
}
