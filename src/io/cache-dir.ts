/** Where the image cache lives by default (the cache itself and the trust rule both need it). */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DISKPIPE_CACHE) return resolve(env.DISKPIPE_CACHE);
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'diskpipe');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'diskpipe');
}
