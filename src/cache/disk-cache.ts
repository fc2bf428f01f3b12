/**
 * The image cache as one object: `new DiskCache({ dir })` pulls images, hands out disks, lists,
 * removes, prunes and verifies entries. Everything a caller configures once (where the cache
 * is, HTTP behaviour, staging) is given to the constructor; what varies per call (a digest to
 * verify, a signal, a progress callback) to each method.
 */
import { CacheError, UsageError } from '../errors.js';
import type { ProgressListener } from '../image/types.js';
import { asAbortError, throwIfAborted } from '../io/abort.js';
import { defaultCacheDir } from '../io/cache-dir.js';
import type { DownloadLimits } from '../sources/download-limits.js';
import type { HttpClientOptions } from '../sources/http-client.js';
import type { DiskResult } from './disks.js';
import type { CacheEventListener } from './events.js';
import { CacheLayout } from './layout.js';
import {
  type PruneOptions,
  prune,
  type RemoveOptions,
  type RemoveResult,
  removeEntry,
  unpin,
} from './maintenance.js';
import { type PullOptions, type PullResult, pull } from './pull.js';
import { type CacheEntry, CacheIndex } from './records.js';
import type { VerifyOptions, VerifyResult } from './verify.js';

/** How downloads behave (set once per cache). */
export interface CacheHttpOptions {
  /** Give up on a download when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number | undefined;
  /** Download attempts after a failure mid-transfer (default 4). */
  retries?: number | undefined;
  /** Largest download (and the minimum rate, also settable in `client`). */
  limits?: DownloadLimits | undefined;
  /** The HTTP client's settings: caCert, insecure, headers, minRate, minRateWindowMs. */
  client?: Omit<HttpClientOptions, 'signal'> | undefined;
}

export interface DiskCacheOptions {
  /**
   * The cache directory (default `~/.cache/diskpipe`, `~/Library/Caches/diskpipe` on macOS;
   * the library reads no environment: `defaultCacheDir(process.env)` gives the CLI's choice,
   * `DISKPIPE_CACHE`, else `$XDG_CACHE_HOME/diskpipe`). The CLI passes `--cache-dir` or that.
   */
  dir?: string | undefined;
  http?: CacheHttpOptions | undefined;
  /**
   * Where a format found inside a compressed download is staged before it is converted
   * (default: the system's temporary directory).
   */
  tempDir?: string | undefined;
  /** Most bytes staged for one download (default: what the image's header allows). */
  maxStaged?: number | undefined;
  /** Use the system's xz/zstd/bzip2 to decompress when present (default true). */
  accelerate?: boolean | undefined;
  /** Memory the liblzma decoder may use for a .xz download (default 256 MiB). */
  xzMemoryLimit?: number | undefined;
  /** Told when a call waits for another process's lock (the CLI prints a line). */
  onEvent?: CacheEventListener | undefined;
}

/** Options of one pull. */
export interface CachePullOptions {
  /** Expected download digest, `sha256:HEX` or `sha512:HEX`; verified while streaming. */
  digest?: string | undefined;
  /** Use the cache only: never touch the network. */
  offline?: boolean | undefined;
  /** Store the sparsified content (blocks the guest filesystems mark free read as zeroes). */
  sparsify?: boolean | undefined;
  /** Aborts the download and conversion; nothing is recorded and no temporary file stays. */
  signal?: AbortSignal | undefined;
  /** Phases `download`, `convert` and `hash` (download and convert may overlap). */
  onProgress?: ProgressListener | undefined;
}

/** Options of one createDisk; the pull options apply when `ref` is a URL not cached yet. */
export interface CreateDiskOptions extends CachePullOptions {
  /** `raw`: a reflink clone (sparse copy without reflink); `qcow2`: an overlay that pins. */
  format?: 'raw' | 'qcow2' | undefined;
  /** Virtual size of the new disk; at least the image's size (default: the image's size). */
  size?: number | undefined;
  /** Replace an existing `dest` (a regular file only). */
  force?: boolean | undefined;
}

export class DiskCache {
  /** The cache directory (absolute). */
  readonly dir: string;
  private readonly index: CacheIndex;

  constructor(private readonly opts: DiskCacheOptions = {}) {
    const layout = new CacheLayout(opts.dir ?? defaultCacheDir());
    this.dir = layout.root;
    this.index = new CacheIndex(layout);
  }

  /**
   * Downloads (or converts a local file) once into the cache, converted to a sparse raw file
   * stored under its content digest; a second pull revalidates and downloads nothing.
   */
  async pull(url: string, opts: CachePullOptions = {}): Promise<PullResult> {
    throwIfAborted(opts.signal, 'pull');
    return pull(url, this.pullOptions(opts)).catch((err: unknown) => {
      throw asAbortError(err, opts.signal, 'pull');
    });
  }

  /**
   * Gives a VM its own disk at `dest` from a cached image: `ref` is a URL (pulled first if
   * needed) or a content digest (full, or a unique prefix of at least 8 hex digits).
   */
  async createDisk(ref: string, dest: string, opts: CreateDiskOptions = {}): Promise<DiskResult> {
    throwIfAborted(opts.signal, 'createDisk');
    checkByteCount(opts.size, 'size');
    // Loaded when used: disk creation (and verify) bring modules a pull does not need.
    const { createDisk } = await import('./disks.js');
    return createDisk(ref, dest, {
      ...this.pullOptions(opts),
      ...(opts.format !== undefined ? { format: opts.format } : {}),
      size: opts.size,
      force: opts.force,
    }).catch((err: unknown) => {
      throw asAbortError(err, opts.signal, 'createDisk');
    });
  }

  /** Every entry, most recently used first. */
  list(): Promise<CacheEntry[]> {
    return this.index.entries();
  }

  /** The entry `ref` names: a URL, a pulled file's path, or a content digest (prefix ≥ 8). */
  entry(ref: string): Promise<CacheEntry> {
    return this.index.resolve(ref);
  }

  /** Path of an entry's read-only raw file. */
  path(entry: CacheEntry): string {
    return this.index.layout.blobPath(entry.blob.contentDigest);
  }

  /**
   * Removes an entry (a ref or an entry from list()); a pinned one only with `force`.
   * Returns the entry as it was removed.
   */
  async remove(ref: string | CacheEntry, opts: RemoveOptions = {}): Promise<CacheEntry> {
    const entry = typeof ref === 'string' ? await this.entry(ref) : ref;
    const removed = await removeEntry(this.index, entry, opts);
    if (!removed) {
      const name = typeof ref === 'string' ? ref : entry.blob.contentDigest;
      throw new CacheError(`'${name}' was removed by another diskpipe meanwhile`);
    }
    return removed;
  }

  /** Removes old or least recently used entries (never pinned ones) and stale temporaries. */
  async prune(opts: PruneOptions = {}): Promise<RemoveResult> {
    // A NaN or negative limit would otherwise select nothing, or every unpinned entry.
    checkByteCount(opts.maxSize, 'maxSize');
    checkByteCount(opts.olderThanMs, 'olderThanMs');
    return prune(this.index, opts);
  }

  /**
   * Recomputes an entry's content digest; a mismatching entry is quarantined (createDisk and
   * offline pulls refuse it until it is pulled again).
   */
  async verify(ref: string | CacheEntry, opts: VerifyOptions = {}): Promise<VerifyResult> {
    throwIfAborted(opts.signal, 'cache verify');
    const entry = typeof ref === 'string' ? await this.entry(ref) : ref;
    const { verifyEntry } = await import('./verify.js');
    return verifyEntry(this.index, entry, opts);
  }

  /** Forgets that the disk at `path` uses any entry; returns the digests it pinned. */
  unpin(path: string): Promise<string[]> {
    return unpin(this.index, path);
  }

  private pullOptions(opts: CachePullOptions): PullOptions {
    const http = this.opts.http ?? {};
    const stage = {
      ...(this.opts.tempDir !== undefined ? { tempDir: this.opts.tempDir } : {}),
      ...(this.opts.maxStaged !== undefined ? { maxStaged: this.opts.maxStaged } : {}),
      ...(this.opts.accelerate !== undefined ? { accelerate: this.opts.accelerate } : {}),
      ...(this.opts.xzMemoryLimit !== undefined ? { xzMemoryLimit: this.opts.xzMemoryLimit } : {}),
    };
    return {
      cacheDir: this.dir,
      digest: opts.digest,
      offline: opts.offline,
      sparsify: opts.sparsify,
      signal: opts.signal,
      onProgress: opts.onProgress,
      onEvent: this.opts.onEvent,
      idleTimeoutMs: http.idleTimeoutMs,
      retries: http.retries,
      limits: http.limits,
      http: http.client,
      stage,
    };
  }
}

/** Options counted in bytes or ms: a whole number ≥ 0 (checked before any download or removal). */
function checkByteCount(value: number | undefined, name: string): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0))
    throw new UsageError(`invalid ${name} ${value}: expected a whole number >= 0`);
}
