/**
 * Options of the HTTP range source: the client's (retries, timeouts, rate, TLS, headers,
 * signal) plus the block cache's, checked once (a bad number is a UsageError, never a hang).
 */
import { UsageError } from '../errors.js';
import { CLIENT_DEFAULTS, type HttpClientOptions } from './http-client.js';

export interface HttpOptions extends HttpClientOptions {
  /** Bytes fetched per cache block (a random read costs at least this much). */
  blockSize?: number;
  /** Upper bound of the block cache, in bytes. */
  cacheBytes?: number;
  /** Largest readahead window for sequential reads, in bytes. */
  maxReadahead?: number;
  /** Requests in flight at once (one keep-alive connection each). */
  maxInFlight?: number;
  /** Largest single range request, in bytes. */
  maxRequestBytes?: number;
  /**
   * Told once, when the resource is opened, if it has no ETag or Last-Modified: a change on
   * the server between two range requests can then only be noticed by its size.
   */
  onUnverified?: (url: string) => void;
}

type CacheKey = 'blockSize' | 'cacheBytes' | 'maxReadahead' | 'maxInFlight' | 'maxRequestBytes';

export const CACHE_DEFAULTS: Required<Pick<HttpOptions, CacheKey>> = {
  blockSize: 256 * 1024,
  cacheBytes: 64 * 1024 * 1024,
  maxReadahead: 8 * 1024 * 1024,
  maxInFlight: 4,
  maxRequestBytes: 4 * 1024 * 1024,
};

/** Every default, for documentation and tests. */
export const HTTP_DEFAULTS = { ...CACHE_DEFAULTS, ...CLIENT_DEFAULTS };

/** The block cache settings of `o`, checked (the client checks its own). */
export function cacheOptions(o: HttpOptions): Required<Pick<HttpOptions, CacheKey>> {
  const r = { ...CACHE_DEFAULTS };
  for (const key of Object.keys(CACHE_DEFAULTS) as CacheKey[]) {
    const v = o[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 1) throw new UsageError(`invalid HTTP option ${key}=${v}`);
    r[key] = v;
  }
  return r;
}
