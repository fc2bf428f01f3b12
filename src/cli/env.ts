/**
 * The environment variables the CLI documents, read in one place. The library never reads the
 * environment: each variable here fills a library option's default (a flag still wins).
 */
import { defaultCacheDir } from '../io/cache-dir.js';
import type { OpenOptions } from '../open.js';
import { parseSize } from './size.js';

/** --cache-dir, else DISKPIPE_CACHE, else $XDG_CACHE_HOME/diskpipe (~/.cache/diskpipe). */
export function cliCacheDir(flag: string | undefined): string {
  return flag ?? defaultCacheDir(process.env);
}

/** DISKPIPE_MAX_STAGED: the default of --max-staged. */
function stagedLimitFromEnv(): number | undefined {
  const v = process.env.DISKPIPE_MAX_STAGED;
  return v === undefined || v === '' ? undefined : parseSize(v, 'DISKPIPE_MAX_STAGED');
}

/** DISKPIPE_TMPDIR: where staged files go (default: the system's temporary directory). */
function tempDirFromEnv(): string | undefined {
  return process.env.DISKPIPE_TMPDIR || undefined;
}

/**
 * Open options from the environment: the cache (trusted for backing files), DISKPIPE_ALLOW_BACKING
 * (colon-separated), DISKPIPE_TMPDIR, DISKPIPE_MAX_STAGED, DISKPIPE_NO_ACCEL=1,
 * DISKPIPE_XZ_MEMLIMIT (memory the liblzma decoder may use).
 */
export function environmentDefaults(cacheDirFlag: string | undefined): OpenOptions {
  const opts: OpenOptions = { cacheDir: cliCacheDir(cacheDirFlag) };
  const allowed = (process.env.DISKPIPE_ALLOW_BACKING ?? '').split(':').filter((d) => d !== '');
  if (allowed.length > 0) opts.allowBacking = allowed;
  const tempDir = tempDirFromEnv();
  if (tempDir !== undefined) opts.tempDir = tempDir;
  const maxStaged = stagedLimitFromEnv();
  if (maxStaged !== undefined) opts.maxStaged = maxStaged;
  if (process.env.DISKPIPE_NO_ACCEL === '1') opts.accelerate = false;
  const xzLimit = process.env.DISKPIPE_XZ_MEMLIMIT;
  if (xzLimit) opts.xzMemoryLimit = parseSize(xzLimit, 'DISKPIPE_XZ_MEMLIMIT');
  return opts;
}

/**
 * Switches that hold for the whole process, set once before a command runs:
 * DISKPIPE_NO_NATIVE=1 (portable fallbacks instead of system calls) and
 * DISKPIPE_INLINE_DECODE=BYTES (benchmarks: the inline/worker decode threshold).
 */
export async function applyProcessEnvironment(): Promise<void> {
  // Loaded only when set: most runs need neither module before their command does.
  if (process.env.DISKPIPE_NO_NATIVE === '1')
    (await import('../io/native.js')).setNativeEnabled(false);
  const inline = process.env.DISKPIPE_INLINE_DECODE;
  if (inline !== undefined && inline !== '') {
    const bytes = parseSize(inline, 'DISKPIPE_INLINE_DECODE');
    (await import('../codec/engine.js')).setInlineDecodeBytes(bytes);
  }
}
