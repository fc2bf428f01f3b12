/**
 * disk create: hand a VM its own disk from a cached image — a reflink clone of the cached raw
 * file (a sparse copy where the filesystem cannot share blocks), or a qcow2 overlay whose
 * backing file is the cached raw file, which pins the entry against rm/prune.
 *
 * Safety: the entry is resolved again, checked, cloned or overlaid and pinned under its lock
 * (the one rm and prune take), so it cannot vanish half-way; a lock on DEST serialises two
 * creates of one disk. The pin is written before the overlay appears (a kill in between
 * leaves an unverified pin, never an unpinned overlay) and removed again if creating fails.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, realpath, stat, truncate } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { CacheError, IoError, oneOf, UsageError } from '../errors.js';
import { throwIfAborted } from '../io/abort.js';
import { writeAtomically } from '../io/atomic.js';
import { acquireLock } from '../io/lock.js';
import { refuseReplacingInUse } from '../io/qemu-locks.js';
import { cloneFile } from '../ops/clone.js';
import { createImage } from '../ops/create.js';
import { checkBlob } from './blob-check.js';
import { CacheLayout } from './layout.js';
import { blobLockPath } from './maintenance.js';
import { type PullOptions, pull, recordUrl, sourceUrl } from './pull.js';
import { type CacheEntry, CacheIndex, now } from './records.js';

/** createDisk's options; those it shares with pull apply when `from` must be pulled first. */
export interface DiskOptions extends PullOptions {
  format?: 'raw' | 'qcow2';
  /** Virtual size of the new disk; at least the image's size (default: the image's size). */
  size?: number | undefined;
  /** Replace an existing DEST (a regular file only). */
  force?: boolean | undefined;
}

export interface DiskResult {
  path: string;
  format: 'raw' | 'qcow2';
  /** How the disk was made. */
  strategy: 'reflink' | 'sparse-copy' | 'overlay';
  contentDigest: string;
  virtualSize: number;
  /** Bytes of new disk space the disk took (shared reflinked blocks are not counted). */
  bytesWritten: number;
  /** Bytes the new file occupies on disk (st_blocks × 512; reflinked blocks count here). */
  allocatedSize: number;
}

const DIGEST_REF = /^[0-9a-f]{8,64}$/i;

/** Finds the cache entry for `from`: a content digest (prefix), a cached URL, or a URL to pull. */
async function resolveFrom(
  index: CacheIndex,
  from: string,
  opts: DiskOptions,
): Promise<CacheEntry> {
  const key = () => recordUrl(sourceUrl(from), opts.sparsify);
  try {
    return await index.resolve(DIGEST_REF.test(from) ? from : key());
  } catch (err) {
    if (DIGEST_REF.test(from)) throw err;
  }
  await pull(from, opts);
  return index.resolve(key());
}

/** DEST may be replaced only with --force, and only when it is a regular file. */
async function checkDestination(path: string, force: boolean | undefined): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new IoError(`cannot check ${path}: ${err.code ?? err.message}`);
  });
  if (!st) return;
  if (!st.isFile()) {
    throw new UsageError(
      `${path} exists and is not a regular file; disk create only makes regular files`,
    );
  }
  if (!force) throw new UsageError(`${path} already exists; use --force to replace it`);
  await refuseReplacingInUse(path); // a running VM would keep writing into a deleted file
}

/**
 * A VM's disk may not live in the cache: with --force it would replace a cached blob (or a
 * record, a lock) that every later disk is made from.
 */
async function refuseInsideCache(path: string, root: string): Promise<void> {
  const real = async (p: string) => realpath(p).catch(() => p);
  const dir = await real(dirname(path));
  const cache = await real(root);
  const where = join(dir, basename(path));
  if (where === cache || where.startsWith(cache + sep)) {
    throw new UsageError(
      `${path} is inside the diskpipe cache (${root}); disks are made outside it`,
    );
  }
}

export async function createDisk(
  from: string,
  dest: string,
  opts: DiskOptions = {},
): Promise<DiskResult> {
  const format = oneOf('disk format', opts.format ?? 'raw', ['raw', 'qcow2'] as const);
  const layout = new CacheLayout(opts.cacheDir);
  await layout.ensure();
  const index = new CacheIndex(layout);
  // resolve() drops a trailing '/': 'disk create … vms/' made a file named vms.
  if (/[/\\]$/.test(dest) && dest !== '/')
    throw new UsageError(`${dest} ends with '/': DEST is the disk file to make, not a directory`);
  const path = resolve(dest);
  await refuseInsideCache(path, layout.root);
  await checkDestination(path, opts.force); // before any download
  const destKey = createHash('sha256').update(path).digest('hex');
  const destLock = await acquireLock(layout.lockPath(`disk-${destKey}`), {
    onWait: () => opts.onEvent?.({ type: 'waiting', lock: 'disk', name: path }),
  });
  try {
    for (let attempt = 0; ; attempt++) {
      const entry = await resolveFrom(index, from, opts);
      const made = await createLocked(index, entry.blob.contentDigest, path, format, opts);
      if (made) {
        await dropOtherPins(index, path, made.format === 'qcow2' ? made.contentDigest : undefined);
        return made;
      }
      // Removed between resolving and locking: a URL is pulled again, a digest is gone.
      if (DIGEST_REF.test(from) || attempt >= 3)
        throw new CacheError(`cache entry for '${from}' was removed while making ${path}`);
    }
  } finally {
    await destLock.release();
  }
}

async function createLocked(
  index: CacheIndex,
  digest: string,
  path: string,
  format: 'raw' | 'qcow2',
  opts: DiskOptions,
): Promise<DiskResult | undefined> {
  const layout = index.layout;
  const lock = await acquireLock(blobLockPath(index, digest));
  try {
    const blob = await index.blob(digest);
    if (!blob) return undefined;
    throwIfAborted(opts.signal, 'createDisk');
    await checkBlob(index, blob);
    const size = opts.size ?? blob.virtualSize;
    if (size < blob.virtualSize) {
      throw new UsageError(
        `--size ${size} is smaller than the image (${blob.virtualSize} bytes); disks can only grow`,
      );
    }
    const blobPath = layout.blobPath(digest);
    let strategy: DiskResult['strategy'] = 'overlay';
    let bytesWritten = 0;
    let allocatedSize = 0;
    const finish = async (tmp: string) => {
      await checkDestination(path, opts.force); // again, now that DEST is locked
      const st = await stat(tmp);
      allocatedSize = st.blocks * 512;
      if (format === 'qcow2') bytesWritten = st.size;
    };
    if (format === 'raw') {
      await writeAtomically(path, async (tmp) => {
        const r = await cloneFile(blobPath, tmp, { signal: opts.signal });
        await chmod(tmp, 0o644); // the cached file is read-only; the VM's disk is not
        if (size > blob.virtualSize) await truncate(tmp, size);
        strategy = r.strategy;
        bytesWritten = r.bytesWritten;
        await finish(tmp);
      });
    } else {
      const hadPin = (await index.pins(digest)).some((p) => p.path === path);
      await index.savePin(digest, path); // before the overlay exists: never an unpinned overlay
      try {
        await writeAtomically(path, async (tmp) => {
          await createImage(tmp, {
            format: 'qcow2',
            backing: blobPath,
            backingFormat: 'raw',
            size,
            trust: { cacheDir: layout.root },
          });
          await finish(tmp);
        });
      } catch (err) {
        if (!hadPin) await index.removePin(digest, path);
        throw err;
      }
    }
    await index.saveBlob({ ...blob, lastUsed: now() });
    return {
      path,
      format,
      strategy,
      contentDigest: digest,
      virtualSize: size,
      bytesWritten,
      allocatedSize,
    };
  } finally {
    await lock.release();
  }
}

/** DEST was replaced (--force): pins it held on other entries are stale now. */
async function dropOtherPins(index: CacheIndex, path: string, keep?: string): Promise<void> {
  for (const blob of await index.blobs()) {
    const digest = blob.contentDigest;
    if (digest === keep) continue;
    if (!(await index.pins(digest)).some((p) => p.path === path)) continue;
    const lock = await acquireLock(blobLockPath(index, digest));
    try {
      await index.removePin(digest, path);
    } finally {
      await lock.release();
    }
  }
}
