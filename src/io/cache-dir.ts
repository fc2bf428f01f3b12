/** Where the image cache lives by default (the cache itself and the trust rule both need it). */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/**
 * The cache directory `env` names: DISKPIPE_CACHE, else $XDG_CACHE_HOME/diskpipe, else
 * ~/.cache/diskpipe (~/Library/Caches/diskpipe on macOS). A relative XDG_CACHE_HOME is
 * ignored, as the XDG Base Directory spec says. The library passes no environment (it reads
 * none); the CLI passes process.env.
 */
export function defaultCacheDir(env: Readonly<Record<string, string | undefined>> = {}): string {
  if (env.DISKPIPE_CACHE) return resolve(env.DISKPIPE_CACHE);
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'diskpipe');
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'diskpipe');
}
