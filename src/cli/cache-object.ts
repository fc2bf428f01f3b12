/**
 * The CLI's DiskCache: the directory from --cache-dir, else the environment (DISKPIPE_CACHE,
 * XDG_CACHE_HOME), and the cache's events printed on stderr.
 */
import { type CacheHttpOptions, DiskCache } from '../cache/disk-cache.js';
import type { CacheEvent } from '../cache/events.js';
import type { ProgressListener } from '../image/types.js';
import { note } from './common.js';
import { environmentDefaults } from './env.js';

export interface CliCacheOptions {
  http?: CacheHttpOptions;
  /**
   * Say on stderr when a pull waits for another diskpipe pulling the same URL, or downloads a
   * cached URL again because its server cannot be asked whether it changed.
   */
  announceWaits?: boolean;
}

export function openCache(dir: string | undefined, opts: CliCacheOptions = {}): DiskCache {
  const env = environmentDefaults(dir);
  return new DiskCache({
    dir: env.cacheDir,
    ...(opts.http ? { http: opts.http } : {}),
    ...(env.tempDir !== undefined ? { tempDir: env.tempDir } : {}),
    ...(env.maxStaged !== undefined ? { maxStaged: env.maxStaged } : {}),
    ...(env.accelerate !== undefined ? { accelerate: env.accelerate } : {}),
    ...(env.xzMemoryLimit !== undefined ? { xzMemoryLimit: env.xzMemoryLimit } : {}),
    onEvent: (event) => onEvent(event, opts.announceWaits === true),
  });
}

function onEvent(event: CacheEvent, announceWaits: boolean): void {
  if (event.type === 'waiting' && event.lock === 'url' && announceWaits)
    process.stderr.write('diskpipe: waiting for another diskpipe pulling the same URL\n');
  if (event.type === 'refetching' && announceWaits)
    note(
      `${event.url} is cached, but its server sends no ETag or Last-Modified to tell whether it changed: downloading it again (--digest or --offline use the cached copy)`,
    );
  if (event.type === 'publishing') testPause('publish');
}

/** The progress callback, which also stops at the first converted bytes under the test hook. */
export function pauseForTests(onProgress: ProgressListener): ProgressListener {
  return (p) => {
    if (p.phase === 'convert' && p.done > 0) testPause('convert');
    onProgress(p);
  };
}

/**
 * Fault injection for the crash tests, kept in the CLI: with DISKPIPE_TEST_PAUSE_AT=<point>
 * the process stops there (after saying so on stderr) and waits to be killed.
 */
function testPause(point: 'convert' | 'publish'): void {
  if (process.env.DISKPIPE_TEST_PAUSE_AT !== point) return;
  process.stderr.write(`diskpipe: test pause at ${point}\n`);
  const shared = new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(shared, 0, 0, 60_000);
}
