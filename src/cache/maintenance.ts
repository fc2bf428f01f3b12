/**
 * Removing entries: `cache rm`, `cache prune` (least recently used first, never pinned) and
 * `cache unpin`. Every decision about an entry (is it pinned? was it used since we looked?)
 * is taken again under the entry's lock, the lock disk create holds while it clones or pins.
 */
import { rm, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CacheError } from '../errors.js';
import { throwIfAborted } from '../io/abort.js';
import { acquireLock } from '../io/lock.js';
import type { CacheEntry, CacheIndex, PinState } from './records.js';
import { sweepTemporaries } from './temp-files.js';

export interface RemoveResult {
  removed: CacheEntry[];
  /** Bytes of disk the removed entries occupied. */
  freed: number;
  /** Entries kept because a disk still uses them. */
  keptPinned: CacheEntry[];
  /** Temporary files of dead processes and idle partial downloads removed (prune). */
  staleTemporaries: string[];
  /** Pins whose disk was missing, dropped by --drop-missing-pins. */
  droppedPins: PinState[];
}

export function blobLockPath(index: CacheIndex, digest: string): string {
  return index.layout.lockPath(`blob-${digest}`);
}

function pinnedError(entry: CacheEntry): CacheError {
  return new CacheError(
    `entry ${entry.blob.contentDigest.slice(0, 12)} backs ${entry.pins.length} disk(s) (${entry.pins.map((p) => p.path + (p.unverified ? ' [unverified: missing]' : '')).join(', ')}); use --force to remove it anyway, or cache unpin PATH`,
  );
}

export interface RemoveOptions {
  /** Remove a pinned entry too (the disks made on it lose their backing file). */
  force?: boolean | undefined;
}

/**
 * Removes one entry; a pinned one only with `force` (its overlays then lose their backing).
 * Returns the entry as it was under the lock, or undefined if it was already gone.
 * `unless` lets prune skip an entry that changed since it was chosen.
 */
export async function removeEntry(
  index: CacheIndex,
  entry: CacheEntry,
  opts: RemoveOptions & { unless?: (current: CacheEntry) => boolean } = {},
): Promise<CacheEntry | undefined> {
  const { force = false, unless } = opts;
  const digest = entry.blob.contentDigest;
  const lock = await acquireLock(blobLockPath(index, digest));
  try {
    const current = await index.entry(digest);
    if (!current) return undefined;
    if (current.pins.length > 0 && !force) throw pinnedError(current);
    if (unless?.(current)) return undefined;
    // Records first, data last: no record may ever point at missing data.
    for (const s of current.sources) await index.removeSource(s.url);
    await unlink(index.layout.blobMetaPath(digest)).catch(() => {});
    await unlink(index.layout.blobPath(digest)).catch(() => {});
    await index.clearBad(digest);
    await rm(index.layout.pinDir(digest), { recursive: true, force: true });
    return current;
  } finally {
    await lock.release();
  }
}

export interface PruneOptions {
  /** Remove entries not used for this long. */
  olderThanMs?: number | undefined;
  /** Then remove least recently used entries until the cache fits in this many bytes. */
  maxSize?: number | undefined;
  /** First drop pins whose disk is missing (the only automatic way a pin goes). */
  dropMissingPins?: boolean | undefined;
  dryRun?: boolean | undefined;
  /** Checked before each entry is removed. */
  signal?: AbortSignal | undefined;
}

export async function prune(index: CacheIndex, opts: PruneOptions): Promise<RemoveResult> {
  const droppedPins = opts.dropMissingPins ? await dropMissingPins(index, opts.dryRun) : [];
  const entries = await index.entries(); // most recently used first
  const now = Date.now();
  const victims = new Set<CacheEntry>();
  for (const e of entries) {
    if (opts.olderThanMs !== undefined && now - Date.parse(e.blob.lastUsed) > opts.olderThanMs)
      victims.add(e);
  }
  if (opts.maxSize !== undefined) {
    let total = entries
      .filter((e) => !victims.has(e))
      .reduce((n, e) => n + e.blob.allocatedSize, 0);
    for (const e of [...entries].reverse()) {
      if (total <= opts.maxSize) break;
      if (victims.has(e)) continue;
      victims.add(e);
      total -= e.blob.allocatedSize;
    }
  }
  const removed: CacheEntry[] = [];
  const keptPinned: CacheEntry[] = [];
  const dropped = (e: CacheEntry) =>
    e.pins.filter((p) => !droppedPins.some((d) => d.path === p.path));
  for (const e of victims) {
    throwIfAborted(opts.signal, 'prune');
    if (opts.dryRun) {
      if (dropped(e).length > 0) keptPinned.push(e);
      else removed.push(e);
      continue;
    }
    try {
      // Used since we looked (a disk was just made from it): it is no longer a victim.
      const gone = await removeEntry(index, e, {
        unless: (c) => c.blob.lastUsed !== e.blob.lastUsed,
      });
      if (gone) removed.push(gone);
    } catch (err) {
      if (!(err instanceof CacheError)) throw err;
      keptPinned.push((await index.entry(e.blob.contentDigest)) ?? e);
    }
  }
  const swept = await sweepTemporaries(index.layout, { parts: true, dryRun: opts.dryRun });
  return {
    removed,
    freed: removed.reduce((n, e) => n + e.blob.allocatedSize, 0) + swept.bytes,
    keptPinned,
    staleTemporaries: swept.files,
    droppedPins,
  };
}

async function dropMissingPins(index: CacheIndex, dryRun?: boolean): Promise<PinState[]> {
  const out: PinState[] = [];
  for (const blob of await index.blobs()) {
    const digest = blob.contentDigest;
    const lock = await acquireLock(blobLockPath(index, digest));
    try {
      for (const pin of await index.pins(digest)) {
        if (!pin.unverified) continue;
        if (!dryRun) await index.removePin(digest, pin.path);
        out.push(pin);
      }
    } finally {
      await lock.release();
    }
  }
  return out;
}

/** `cache unpin PATH`: forgets that the disk at PATH uses any entry. */
export async function unpin(index: CacheIndex, path: string): Promise<string[]> {
  const target = resolve(path);
  const digests: string[] = [];
  for (const blob of await index.blobs()) {
    const digest = blob.contentDigest;
    const lock = await acquireLock(blobLockPath(index, digest));
    try {
      if (await index.removePin(digest, target)) digests.push(digest);
    } finally {
      await lock.release();
    }
  }
  if (digests.length === 0) throw new CacheError(`no cache entry is pinned by ${target}`);
  return digests;
}

/** DUR: `30d`, `12h`, `45m`, `90s`. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([dhms])$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as 'd' | 'h' | 'm' | 's'];
  return Number(m[1]) * unit;
}
