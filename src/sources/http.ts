/**
 * An HTTP(S) resource as a random-access ByteSource, read with Range requests through a block
 * cache. The size comes from the first range answer (Content-Range), so servers without HEAD
 * work; a server that ignores ranges gets a clear error pointing at `diskpipe pull`.
 */
import { NotCapableError, UsageError } from '../errors.js';
import type { ByteSource } from '../image/types.js';
import { BlockCache } from './block-cache.js';
import { withoutCredentials } from './credentials.js';
import {
  discard,
  displayUrl,
  HTTP_DEFAULTS,
  HttpClient,
  HttpError,
  type HttpOptions,
  type ResolvedHttpOptions,
  type Response,
  readBody,
  statusError,
  type Validators,
} from './http-request.js';

export type { HttpOptions } from './http-request.js';

const MAX_REDIRECTS = 5;

export const NO_RANGES =
  "server does not support range requests; use 'diskpipe pull' to download it";

export class HttpSource implements ByteSource {
  /** Bytes from the network are untrusted: an image read from here may not reference files. */
  readonly untrusted = true;
  private readonly cache: BlockCache;

  private constructor(
    private readonly client: HttpClient,
    readonly size: number,
    /** ETag / Last-Modified of the resource when it was opened. */
    readonly validators: Validators,
    first: Uint8Array,
  ) {
    const o = client.opts;
    this.cache = new BlockCache({
      size,
      blockSize: o.blockSize,
      capacity: Math.max(o.cacheBytes, o.blockSize),
      maxInFlight: o.maxInFlight,
      maxRequest: Math.max(o.maxRequestBytes, o.blockSize),
      maxReadahead: o.maxReadahead,
      fetch: (start, end) => this.fetch(start, end),
    });
    this.cache.seed(0, first);
  }

  get name(): string {
    return displayUrl(this.client.url);
  }

  /** The URL after redirects. */
  get url(): URL {
    return this.client.url;
  }

  static async open(spec: string, options: HttpOptions = {}): Promise<HttpSource> {
    let url: URL;
    try {
      url = new URL(spec);
    } catch {
      throw new UsageError(`invalid URL '${withoutCredentials(spec)}'`);
    }
    const opts = resolveOptions(options);
    const client = new HttpClient(url, opts);
    try {
      const first = await client.withRetries(() => firstRange(client, opts.blockSize));
      return new HttpSource(client, first.size, first.validators, first.body);
    } catch (err) {
      client.close();
      throw err;
    }
  }

  read(buf: Uint8Array, offset: number): Promise<number> {
    return this.cache.read(buf, offset);
  }

  async close(): Promise<void> {
    this.client.close();
  }

  private fetch(start: number, end: number): Promise<Uint8Array> {
    const label = this.name;
    return this.client.withRetries(async () => {
      const res = await this.client.request(this.client.url, [start, end]);
      if (res.status === 200) {
        discard(res);
        throw new HttpError(`${label}: ${NO_RANGES}`, false, 200);
      }
      if (res.status !== 206) throw statusError(res, label);
      checkEncoding(res, label);
      const range = contentRange(res, label);
      if (range.total !== this.size) {
        discard(res);
        throw new HttpError(
          `${label}: the resource changed size on the server (${this.size} → ${range.total} bytes)`,
          false,
        );
      }
      if (range.start !== start || range.end !== end) {
        discard(res);
        throw new HttpError(
          `${label}: server answered bytes ${range.start}-${range.end} for ${start}-${end}`,
          false,
        );
      }
      checkValidators(this.validators, validatorsOf(res), label, res);
      checkLength(res, end - start, label);
      return readBody(res, end - start, label);
    });
  }
}

function resolveOptions(o: HttpOptions): ResolvedHttpOptions {
  const r: ResolvedHttpOptions = {
    ...HTTP_DEFAULTS,
    headers: o.headers,
    insecure: o.insecure,
    caCert: o.caCert,
    signal: o.signal,
  };
  for (const key of Object.keys(HTTP_DEFAULTS) as (keyof typeof HTTP_DEFAULTS)[]) {
    const v = o[key];
    if (v === undefined) continue;
    const least = key === 'retries' || key === 'retryDelayMs' || key === 'minRate' ? 0 : 1;
    if (!Number.isSafeInteger(v) || v < least)
      throw new UsageError(`invalid HTTP option ${key}=${v}`);
    r[key] = v;
  }
  return r;
}

interface First {
  size: number;
  body: Uint8Array;
  validators: Validators;
}

/** Asks for the first block; the answer tells the size and whether ranges work. */
async function firstRange(client: HttpClient, blockSize: number): Promise<First> {
  let url = client.url;
  for (let hops = 0; ; hops++) {
    const label = displayUrl(url);
    const res = await client.request(url, [0, blockSize]);
    const location = res.headers.location;
    if (res.status >= 300 && res.status < 400 && location) {
      discard(res);
      if (hops >= MAX_REDIRECTS) throw new HttpError(`${label}: too many redirects`, false);
      url = new URL(location, url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new HttpError(`${label}: redirect to unsupported URL ${displayUrl(url)}`, false);
      client.url = url;
      continue;
    }
    const validators = validatorsOf(res);
    if (res.status === 206) {
      checkEncoding(res, label);
      const r = contentRange(res, label);
      if (r.start !== 0 || r.end > blockSize || r.end > r.total) {
        discard(res);
        throw new HttpError(`${label}: server answered bytes ${r.start}-${r.end} for 0`, false);
      }
      return { size: r.total, body: await readBody(res, r.end, label), validators };
    }
    if (res.status === 200) {
      // A server that ignores Range can still serve a resource that fits in the first block.
      const length = Number(res.headers['content-length']);
      if (res.headers['content-length'] !== undefined && length <= blockSize) {
        checkEncoding(res, label);
        return { size: length, body: await readBody(res, length, label), validators };
      }
      discard(res);
      throw new HttpError(`${label}: ${NO_RANGES}`, false, 200);
    }
    if (res.status === 416) {
      discard(res);
      // An empty resource cannot satisfy any range: "bytes */0".
      if (/^bytes \*\/0$/.test(String(res.headers['content-range'] ?? '')))
        return { size: 0, body: new Uint8Array(0), validators };
    }
    throw statusError(res, label);
  }
}

interface Range {
  start: number;
  /** Exclusive. */
  end: number;
  total: number;
}

function contentRange(res: Response, label: string): Range {
  const text = String(res.headers['content-range'] ?? '');
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(text.trim());
  const r = m ? { start: Number(m[1]), end: Number(m[2]) + 1, total: Number(m[3]) } : undefined;
  if (!r || !Number.isSafeInteger(r.total) || r.start >= r.end || r.end > r.total) {
    discard(res);
    throw new HttpError(`${label}: invalid Content-Range '${text}' in a 206 answer`, false);
  }
  return r;
}

/**
 * Content-Length must agree with Content-Range: without ETag/Last-Modified, the totals and
 * lengths of every answer are all that shows a resource changing (or a confused server).
 */
function checkLength(res: Response, expected: number, label: string): void {
  const given = res.headers['content-length'];
  if (given !== undefined && Number(given) !== expected) {
    discard(res);
    throw new HttpError(
      `${label}: server sent Content-Length ${given} for a range of ${expected} bytes`,
      false,
    );
  }
}

function checkEncoding(res: Response, label: string): void {
  const enc = res.headers['content-encoding'];
  if (enc && enc !== 'identity') {
    discard(res);
    throw new HttpError(`${label}: server sent Content-Encoding ${enc} for a byte range`, false);
  }
}

function validatorsOf(res: Response): Validators {
  const etag = res.headers.etag;
  // Weak ETags say nothing about byte equality.
  return {
    etag: etag && !etag.startsWith('W/') ? etag : undefined,
    lastModified: res.headers['last-modified'],
  };
}

function checkValidators(first: Validators, now: Validators, label: string, res: Response): void {
  const changed =
    (first.etag && now.etag && first.etag !== now.etag) ||
    (first.lastModified && now.lastModified && first.lastModified !== now.lastModified);
  if (changed) {
    discard(res);
    throw new HttpError(`${label}: the resource changed on the server while it was read`, false);
  }
}

/** The `http`/`https` scheme opener registered in sources/index.ts. */
export async function openHttp(
  spec: string,
  opts: { writable?: boolean; http?: HttpOptions },
): Promise<{ source: ByteSource; untrusted: boolean }> {
  if (opts.writable) throw new NotCapableError(`${spec}: HTTP sources are read-only`);
  return { source: await HttpSource.open(spec, opts.http), untrusted: true };
}
