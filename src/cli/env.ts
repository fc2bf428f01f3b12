/**
 * The environment variables the CLI documents, read in one place. The library never reads the
 * environment: each variable here fills a library option's default.
 */
import { parseSize } from './common.js';

/** DISKPIPE_MAX_STAGED: the default of --max-staged. */
export function stagedLimitFromEnv(): number | undefined {
  const v = process.env.DISKPIPE_MAX_STAGED;
  return v === undefined || v === '' ? undefined : parseSize(v, 'DISKPIPE_MAX_STAGED');
}

/** DISKPIPE_TMPDIR: where staged files go (default: the system's temporary directory). */
export function tempDirFromEnv(): string | undefined {
  return process.env.DISKPIPE_TMPDIR || undefined;
}
