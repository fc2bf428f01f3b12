/**
 * Limits of one download's body: a minimum transfer rate and a largest size. A known length is
 * refused before a byte is written when it exceeds --max-download or the free space where the
 * download goes; an endless body stops at the limit and its partial file is removed.
 */
import { statfs, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DiskpipeError } from '../errors.js';
import { displayUrl } from './http-request.js';
import { type RateLimits, slowTransferMessage, watchedChunks } from './min-rate.js';

export interface DownloadLimits extends RateLimits {
  /** Largest download in bytes (--max-download; default: free space, else 64 GiB). */
  maxDownload?: number | undefined;
}

/** Without --max-download, a body of unknown length stops here. */
export const DEFAULT_MAX_DOWNLOAD = 64 * 2 ** 30;

/** A download stopped by a limit: final, never retried. */
export class TransferLimitError extends DiskpipeError {
  constructor(message: string) {
    super('HTTP', message);
  }
}

/**
 * The body of `response` (which answers from byte `start` on; `total` is the whole length when
 * known), checked against `limits`. `abort` must cancel the transfer.
 */
export async function* limitedBody(
  response: { body: ReadableStream<Uint8Array> | null },
  where: { url: string; partPath: string; start: number; total: number | undefined },
  limits: DownloadLimits,
  abort: () => void,
): AsyncGenerator<Uint8Array> {
  const label = safeLabel(where.url);
  // Without --max-download, a known length is bounded by the free space alone.
  const max =
    limits.maxDownload ??
    (where.total !== undefined ? Number.MAX_SAFE_INTEGER : DEFAULT_MAX_DOWNLOAD);
  const flag = limits.maxDownload === undefined ? ' (raise it with --max-download)' : '';
  const refuse = async (why: string) => {
    abort();
    await dropPart(where.partPath);
    return new TransferLimitError(`${label}: ${why}`);
  };
  if (where.total !== undefined) {
    if (where.total > max)
      throw await refuse(
        `download of ${where.total} bytes exceeds the limit of ${max} bytes${flag}`,
      );
    const free = await freeSpace(where.partPath);
    if (free !== undefined && where.total - where.start > free)
      throw await refuse(
        `download of ${where.total} bytes does not fit in the ${free} bytes free in ${dirname(where.partPath)}`,
      );
  }
  if (!response.body) return;
  let tooLarge = false;
  try {
    yield* watchedChunks(response.body as unknown as AsyncIterable<Uint8Array>, {
      ...limits,
      abort,
      slow: () => new TransferLimitError(`${label}: ${slowTransferMessage(limits)}`),
      maxBytes: max - where.start,
      tooLarge: () => {
        tooLarge = true;
        return new TransferLimitError(
          `${label}: download stopped at the limit of ${max} bytes${flag}`,
        );
      },
    });
  } finally {
    if (tooLarge) await dropPart(where.partPath);
  }
}

async function freeSpace(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(dirname(path));
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

async function dropPart(partPath: string): Promise<void> {
  await unlink(partPath).catch(() => {});
  await unlink(`${partPath}.json`).catch(() => {});
}

function safeLabel(url: string): string {
  try {
    return displayUrl(new URL(url));
  } catch {
    return 'download';
  }
}
