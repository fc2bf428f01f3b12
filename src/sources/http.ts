/**
 * An HTTP(S) resource as a random-access ByteSource, read with Range requests through a block
 * cache. The size comes from the first range answer (Content-Range), so servers without HEAD
 * work; a server that ignores ranges gets a clear error pointing at `diskpipe pull`.
 */
import { HttpError, NotCapableError } from '../errors.js';
import type { ByteSource } from '../image/types.js';
import { BlockCache } from './block-cache.js';
import { displayUrl } from './credentials.js';
import { discard, readBody } from './http-body.js';
import { HttpClient, type HttpResponse } from './http-client.js';
import { statusError } from './http-errors.js';
import { cacheOptions, type HttpOptions } from './http-options.js';
import {
  canVerify,
  changeBetween,
  contentLength,
  parseContentRange,
  type Validators,
  validatorsOf,
} from './http-validators.js';

export type { HttpOptions } from './http-options.js';

export const NO_RANGES =
  "server does not support range requests; use 'diskpipe pull' to download it";

export class HttpSource implements ByteSource {
  /** Bytes from the network are untrusted: an image read from here may not reference files. */
  readonly untrusted = true;
  private readonly cache: BlockCache;

  /** The URL after redirects (later ranges go there directly), without credentials. */
  readonly url: URL;
  readonly size: number;
  /** ETag / Last-Modified / size of the resource when it was opened. */
  readonly validators: Validators;
  /**
   * 'unverified' when the server sends neither ETag nor Last-Modified and the resource needs
   * more than one request: a change between requests is then noticed only if its size changes.
   */
  readonly consistency: 'verified' | 'unverified';

  private constructor(
    private readonly client: HttpClient,
    first: First,
    o: ReturnType<typeof cacheOptions>,
  ) {
    this.url = first.url;
    this.size = first.size;
    this.validators = first.validators;
    const oneRequest = first.size <= first.body.length;
    this.consistency = canVerify(first.validators) || oneRequest ? 'verified' : 'unverified';
    this.cache = new BlockCache({
      size: first.size,
      blockSize: o.blockSize,
      capacity: Math.max(o.cacheBytes, o.blockSize),
      maxInFlight: o.maxInFlight,
      maxRequest: Math.max(o.maxRequestBytes, o.blockSize),
      maxReadahead: o.maxReadahead,
      fetch: (start, end) => this.fetch(start, end),
    });
    this.cache.seed(0, first.body);
  }

  get name(): string {
    return displayUrl(this.url);
  }

  static async open(spec: string, options: HttpOptions = {}): Promise<HttpSource> {
    const o = cacheOptions(options);
    const client = new HttpClient(spec, options, o.maxInFlight + 1);
    try {
      const first = await client.withRetries(() => firstRange(client, o.blockSize));
      const source = new HttpSource(client, first, o);
      if (source.consistency === 'unverified') options.onUnverified?.(source.name);
      return source;
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
      const res = await this.client.request({ range: [start, end] }, this.url);
      if (res.status === 200) {
        discard(res);
        throw new HttpError(`${label}: ${NO_RANGES}`, false, 200);
      }
      if (res.status !== 206) throw unexpected(res, label);
      checkEncoding(res, label);
      const range = contentRange(res, label);
      // Without ETag/Last-Modified, the totals and lengths of every answer are all that shows
      // a resource changing (or a confused server).
      const changed = changeBetween(this.validators, validatorsOf(res.headers, res.status));
      if (changed) fail(res, `${label}: ${changed}`);
      if (range.start !== start || range.end !== end)
        fail(
          res,
          `${label}: server answered bytes ${range.start}-${range.end} for ${start}-${end}`,
        );
      const given = res.headers['content-length'];
      if (given !== undefined && contentLength(res.headers) !== end - start)
        fail(
          res,
          `${label}: server sent Content-Length ${given} for a range of ${end - start} bytes`,
        );
      return readBody(res, end - start, label);
    });
  }
}

interface First {
  url: URL;
  size: number;
  body: Uint8Array;
  validators: Validators;
}

/** Asks for the first block; the answer tells the size and whether ranges work. */
async function firstRange(client: HttpClient, blockSize: number): Promise<First> {
  const res = await client.request({ range: [0, blockSize] });
  const label = displayUrl(res.url);
  const validators = validatorsOf(res.headers, res.status);
  const url = res.url;
  if (res.status === 206) {
    checkEncoding(res, label);
    const r = contentRange(res, label);
    if (r.start !== 0 || r.end > blockSize)
      fail(res, `${label}: server answered bytes ${r.start}-${r.end} for 0`);
    const given = res.headers['content-length'];
    if (given !== undefined && contentLength(res.headers) !== r.end)
      fail(res, `${label}: server sent Content-Length ${given} for a range of ${r.end} bytes`);
    return { url, size: r.total, body: await readBody(res, r.end, label), validators };
  }
  if (res.status === 200) {
    // A server that ignores Range can still serve a resource that fits in the first block.
    const length = contentLength(res.headers);
    if (length !== undefined && length <= blockSize) {
      checkEncoding(res, label);
      return { url, size: length, body: await readBody(res, length, label), validators };
    }
    fail(res, `${label}: ${NO_RANGES}`, 200);
  }
  // An empty resource cannot satisfy any range: "bytes */0".
  if (res.status === 416 && validators.size === 0) {
    discard(res);
    return { url, size: 0, body: new Uint8Array(0), validators };
  }
  throw unexpected(res, label);
}

/** A 206 answer's Content-Range, which must give the total. */
function contentRange(
  res: HttpResponse,
  label: string,
): { start: number; end: number; total: number } {
  const r = parseContentRange(res.headers);
  if (!r || r.total === undefined)
    fail(
      res,
      `${label}: invalid Content-Range '${res.headers['content-range'] ?? ''}' in a 206 answer`,
    );
  return { start: r.start, end: r.end, total: r.total };
}

function checkEncoding(res: HttpResponse, label: string): void {
  const enc = res.headers['content-encoding'];
  if (enc && enc !== 'identity')
    fail(res, `${label}: server sent Content-Encoding ${enc} for a byte range`);
}

function unexpected(res: HttpResponse, label: string): HttpError {
  discard(res);
  return statusError(res.status, label);
}

/** Drops the answer and fails with a permanent error. */
function fail(res: HttpResponse, message: string, status?: number): never {
  discard(res);
  throw new HttpError(message, false, status);
}

/** The `http`/`https` scheme opener registered in sources/index.ts. */
export async function openHttp(
  spec: string,
  opts: { writable?: boolean; http?: HttpOptions },
): Promise<{ source: ByteSource; untrusted: boolean }> {
  if (opts.writable) throw new NotCapableError(`${displayUrl(spec)}: HTTP sources are read-only`);
  return { source: await HttpSource.open(spec, opts.http), untrusted: true };
}
