/** Removing entries: `cache rm` and `cache prune` (least recently used first, never pinned). */
import { readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CacheError } from '../errors.js';
import { acquireLock } from '../io/lock.js';
import type { CacheEntry, CacheIndex } from './records.js';

export interface RemoveResult {
  removed: CacheEntry[];
  /** Bytes of disk the removed entries occupied. */
  freed: number;
  /** Entries kept because a disk still uses them. */
  keptPinned: CacheEntry[];
  /** Stale temporary files removed (prune). */
  staleTemporaries: string[];
}

/** Removes one entry; a pinned one only with `force` (its overlays then lose their backing). */
export async function removeEntry(
  index: CacheIndex,
  entry: CacheEntry,
  force: boolean,
): Promise<void> {
  if (entry.pins.length > 0 && !force) {
    throw new CacheError(
      `entry ${entry.blob.contentDigest.slice(0, 12)} backs ${entry.pins.length} disk(s) (${entry.pins.map((p) => p.path).join(', ')}); use --force to remove it anyway`,
    );
  }
  const digest = entry.blob.contentDigest;
  const lock = await acquireLock(index.layout.lockPath(`blob-${digest}`));
  try {
    // Records first, data last: no record may ever point at missing data.
    for (const s of entry.sources) await index.removeSource(s.url);
    await unlink(index.layout.blobMetaPath(digest)).catch(() => {});
    await unlink(index.layout.blobPath(digest)).catch(() => {});
    await rm(index.layout.pinDir(digest), { recursive: true, force: true });
  } finally {
    await lock.release();
  }
}

export interface PruneOptions {
  /** Remove entries not used for this long. */
  olderThanMs?: number | undefined;
  /** Then remove least recently used entries until the cache fits in this many bytes. */
  maxSize?: number | undefined;
  dryRun?: boolean | undefined;
  /** Temporary files untouched this long are stale (default one day). */
  staleAfterMs?: number | undefined;
}

export async function prune(index: CacheIndex, opts: PruneOptions): Promise<RemoveResult> {
  const entries = await index.entries(); // most recently used first
  const now = Date.now();
  const victims = new Set<CacheEntry>();
  const keptPinned: CacheEntry[] = [];
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
  for (const e of victims) {
    if (e.pins.length > 0) {
      keptPinned.push(e);
      continue;
    }
    if (!opts.dryRun) await removeEntry(index, e, false);
    removed.push(e);
  }
  const staleTemporaries = await staleTemporaryFiles(index, opts.staleAfterMs ?? 24 * 3600_000);
  if (!opts.dryRun) for (const f of staleTemporaries) await unlink(f).catch(() => {});
  return {
    removed,
    freed: removed.reduce((n, e) => n + e.blob.allocatedSize, 0),
    keptPinned,
    staleTemporaries,
  };
}

async function staleTemporaryFiles(index: CacheIndex, staleAfterMs: number): Promise<string[]> {
  const dir = index.layout.tmpDir;
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile() && Date.now() - st.mtimeMs > staleAfterMs) out.push(path);
  }
  return out;
}

/** DUR: `30d`, `12h`, `45m`, `90s`. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([dhms])$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as 'd' | 'h' | 'm' | 's'];
  return Number(m[1]) * unit;
}
