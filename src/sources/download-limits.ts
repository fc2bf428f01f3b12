/**
 * Limits of one download's body: a largest size. A known length is refused before a byte is
 * written when it exceeds --max-download or the free space where the download goes; an
 * endless body stops at the limit. The caller drops the partial file of a refused download.
 * (The minimum transfer rate is the HTTP client's, as for range reads.)
 */
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HttpError, withOptionHint } from '../errors.js';
import type { RateLimits } from './min-rate.js';

export interface DownloadLimits extends RateLimits {
  /** Largest download in bytes (--max-download; default: free space, else 64 GiB). */
  maxDownload?: number | undefined;
}

/** Without --max-download, a body of unknown length stops here. */
export const DEFAULT_MAX_DOWNLOAD = 64 * 2 ** 30;

export interface DownloadPlace {
  /** The URL for messages (no credentials). */
  label: string;
  partPath: string;
  /** The answer's first byte in the resource. */
  start: number;
  /** The resource's whole length, when known. */
  total: number | undefined;
}

/**
 * Checks a known length against the limits before a byte is written and returns the largest
 * end offset the body may reach. Limit errors are final: never retried.
 */
export async function downloadBound(where: DownloadPlace, limits: DownloadLimits): Promise<number> {
  // Without --max-download, a known length is bounded by the free space alone.
  const max =
    limits.maxDownload ??
    (where.total !== undefined ? Number.MAX_SAFE_INTEGER : DEFAULT_MAX_DOWNLOAD);
  if (where.total === undefined) return max;
  if (where.total > max)
    throw raiseWith(
      limits,
      refuse(where, `download of ${where.total} bytes exceeds the limit of ${max} bytes`),
    );
  const free = await freeSpace(where.partPath);
  if (free !== undefined && where.total - where.start > free)
    throw refuse(
      where,
      `download of ${where.total} bytes does not fit in the ${free} bytes free in ${dirname(where.partPath)}`,
    );
  return max;
}

/** The error for a body that went past `max` bytes. */
export function tooLarge(where: DownloadPlace, max: number, limits: DownloadLimits): HttpError {
  return raiseWith(limits, refuse(where, `download stopped at the limit of ${max} bytes`));
}

/** The default limit names its option, for the commands that take it (pull; not disk create). */
function raiseWith(limits: DownloadLimits, err: HttpError): HttpError {
  if (limits.maxDownload !== undefined) return err;
  return withOptionHint(err, { option: 'max-download', advice: ' (raise it with --max-download)' });
}

function refuse(where: DownloadPlace, why: string): HttpError {
  return new HttpError(`${where.label}: ${why}`, false);
}

async function freeSpace(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(dirname(path));
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}
