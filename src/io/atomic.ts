/**
 * Outputs are written under a temporary name beside the destination and renamed into place
 * only when complete, so an existing file is never truncated by a failed or interrupted run.
 */
import { randomBytes } from 'node:crypto';
import { constants, renameSync, type Stats } from 'node:fs';
import { access, chmod, chown, lstat, readdir, readlink, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DiskpipeError, ioError, UsageError, withMessage } from '../errors.js';
import {
  markOutputCommitted,
  registerTemporary,
  removeTemporaries,
  unregisterTemporary,
} from './cleanup.js';
import { pidIsAlive } from './json-file.js';
import { copyAccessAcl } from './native.js';

/**
 * A temporary name beside `dest`, registered at once for removal on a signal (the CLI's
 * handlers); call unregisterTemporary(name) after renaming it into place.
 */
export function temporaryNameFor(dest: string): string {
  const tmp = join(
    dirname(dest),
    `.${basename(dest)}.diskpipe-${process.pid}-${randomBytes(4).toString('hex')}.tmp`,
  );
  registerTemporary(tmp);
  return tmp;
}

export interface AtomicOptions {
  /**
   * This is the command's final output: once it is renamed into place, a signal no longer
   * fails the run (the CLI ignores it and reports success).
   */
  final?: boolean;
}

/**
 * Runs `fn` on a temporary path and renames it to `dest` when it succeeds; removes it otherwise.
 * The temporary path is registered for removal on a signal before `fn` creates it, and errors
 * that mention it name `dest` instead (the user never heard of the temporary name).
 */
export async function writeAtomically<T>(
  dest: string,
  fn: (tmp: string) => Promise<T>,
  opts: AtomicOptions = {},
): Promise<T> {
  const target = await followSymlinks(dest);
  const replaced = await lstat(target).catch(() => undefined);
  // A file the caller may not write (kept read-only, another user's) is not theirs to
  // replace, though the directory allows the rename: qemu-img cannot open it and refuses.
  if (replaced?.isFile()) {
    await access(target, constants.W_OK).catch((err: unknown) => {
      throw ioError(err, `cannot write ${dest}`);
    });
  }
  await removeOrphans(target);
  const tmp = temporaryNameFor(target);
  try {
    const result = await nameDestination(tmp, dest, fn(tmp));
    if (replaced?.isFile()) await keepAccess(tmp, replaced, target, dest);
    // Synchronous, so no signal handler runs between the rename and the bookkeeping after it.
    try {
      renameSync(tmp, target);
    } catch (err) {
      throw ioError(err, `cannot rename output to ${dest}`);
    }
    unregisterTemporary(tmp);
    if (opts.final === true) markOutputCommitted();
    return result;
  } finally {
    if (unregisterTemporary(tmp)) await rm(tmp, { force: true }).catch(() => {});
  }
}

/**
 * The replaced file's owner and permission bits carry over to its replacement, as when
 * qemu-img truncates the file in place: a private (0600) disk must not come back readable by
 * everyone, nor a user's disk owned by root after `sudo`. Only root can give a file away;
 * anyone else's output stays theirs, as a new file would.
 */
async function keepAccess(tmp: string, old: Stats, oldPath: string, dest: string): Promise<void> {
  try {
    const now = await stat(tmp);
    if (now.uid !== old.uid || now.gid !== old.gid) {
      await chown(tmp, old.uid, old.gid).catch(() => {});
    }
    // After chown, which clears set-id bits.
    await chmod(tmp, keptMode(old.mode));
    // With an ACL the mode's group bits are its mask: the owning group alone may have had
    // none of them (a disk shared with one user), so the ACL itself goes over too.
    copyAccessAcl(oldPath, tmp);
  } catch (err) {
    throw ioError(err, `cannot give ${dest} the permissions of the file it replaces`);
  }
}

/**
 * The permission bits a replacement keeps. Writing new content into a set-id file without
 * CAP_FSETID (root) makes the kernel drop set-uid, and set-gid when group execute is set:
 * new content must not run with the old file's privileges (qemu-img's in-place write gets
 * the same). Root's keep them, as qemu-img's do.
 */
function keptMode(mode: number): number {
  let bits = mode & 0o7777;
  if (process.getuid?.() === 0) return bits;
  bits &= ~0o4000;
  if (bits & 0o010) bits &= ~0o2000;
  return bits;
}

/**
 * Removes temporary files an earlier run for the same destination left when it was killed
 * (kill -9, a crash): ours by name, regular files, and their owner pid is gone. A live
 * owner's file (another diskpipe writing this destination) is left alone.
 */
async function removeOrphans(target: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dirname(target));
  } catch {
    return; // a missing or unreadable directory: creating the output says why
  }
  for (const name of names) {
    const owned = temporaryOf(name);
    if (owned?.dest !== basename(target) || owned.pids.some(pidIsAlive)) continue;
    const path = join(dirname(target), name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFile()) await rm(path, { force: true }).catch(() => {});
  }
}

/**
 * The destination a temporary name is for, and the pids in it. Temporaries nest: disk create's
 * sparse copy writes its own temporary for disk create's (..vm.raw.diskpipe-P-x.tmp.diskpipe-P-y.tmp),
 * which a match on '.vm.raw.diskpipe-' alone never removed after a kill -9.
 */
function temporaryOf(name: string): { dest: string; pids: number[] } | undefined {
  const pids: number[] = [];
  let inner = name;
  for (;;) {
    const m = /^\.(.+)\.diskpipe-(\d+)-[0-9a-f]{8}\.tmp$/.exec(inner);
    if (!m) break;
    pids.push(Number(m[2]));
    inner = m[1]!;
  }
  return pids.length > 0 ? { dest: inner, pids } : undefined;
}

/**
 * The file a destination path finally names. A symlink the user made (say `vm.img -> /data/vm.raw`)
 * stays a symlink and its target gets the new content, as `qemu-img convert` and `cp` do;
 * renaming over the link itself would silently replace it with a file.
 */
async function followSymlinks(dest: string): Promise<string> {
  let path = dest;
  for (let hops = 0; hops < 40; hops++) {
    try {
      if (!(await lstat(path)).isSymbolicLink()) return path;
    } catch {
      return path; // missing (or unreadable): creating it says why
    }
    path = resolve(dirname(path), await readlink(path));
  }
  throw new UsageError(`cannot write to ${dest}: too many levels of symbolic links`);
}

async function nameDestination<T>(tmp: string, dest: string, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    // Errors from the work name the temporary file; the user named the destination.
    if (err instanceof DiskpipeError && err.message.includes(tmp)) {
      throw withMessage(err, err.message.split(tmp).join(dest));
    }
    throw err;
  }
}

/** Removes every temporary output still in progress (signal handlers; synchronous on purpose). */
export function removeTemporaryOutputs(): void {
  removeTemporaries();
}
