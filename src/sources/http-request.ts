/**
 * One HTTP range request at a time, over node:http(s) with a keep-alive agent: the status and
 * header checks, timeouts, and retries with backoff that the HTTP byte source relies on.
 */

import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { HttpError } from '../errors.js';
import { asAbortError, throwIfAborted } from '../io/abort.js';
import { mayKeepCredentials } from './credentials.js';
import { RATE_DEFAULTS, RateWatch, slowTransferMessage } from './min-rate.js';

export interface HttpOptions {
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
  /** Attempts after the first one for transient failures (network errors, 5xx, 429). */
  retries?: number;
  /** First retry delay in ms; doubles on each retry (capped at 8 s). */
  retryDelayMs?: number;
  /** A request fails when no byte arrives for this long (ms). */
  timeoutMs?: number;
  /** A request fails when its answer arrives slower than this many bytes/s (0: never)... */
  minRate?: number;
  /** ...averaged over this window (ms), as curl's --speed-limit/--speed-time. */
  minRateWindowMs?: number;
  /** Extra request headers (authorization...); sent only to the URL's own origin. */
  headers?: Record<string, string>;
  /** Accept any server certificate (--insecure). */
  insecure?: boolean;
  /** Trust these CA certificates (PEM text, --ca-cert FILE) besides the system's. */
  caCert?: string;
  /** Cancels every request of the source (the open and later reads) with an AbortError. */
  signal?: AbortSignal;
}

type Extra = 'headers' | 'insecure' | 'caCert' | 'signal';

export const HTTP_DEFAULTS: Required<Omit<HttpOptions, Extra>> = {
  blockSize: 256 * 1024,
  cacheBytes: 64 * 1024 * 1024,
  maxReadahead: 8 * 1024 * 1024,
  maxInFlight: 4,
  maxRequestBytes: 4 * 1024 * 1024,
  retries: 4,
  retryDelayMs: 250,
  timeoutMs: 30_000,
  ...RATE_DEFAULTS,
};

export { HttpError };

/** The resource's identity when first seen, so a change mid-read is noticed. */
export interface Validators {
  etag?: string | undefined;
  lastModified?: string | undefined;
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  message: IncomingMessage;
  /** Counts body bytes against the minimum rate; stopped when the body is done. */
  watch: RateWatch;
}

/** A URL without its credentials, for messages. */
export function displayUrl(url: URL): string {
  if (!url.username && !url.password) return url.href;
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

export type ResolvedHttpOptions = Required<Omit<HttpOptions, Extra>> & Pick<HttpOptions, Extra>;

export class HttpClient {
  private readonly agents = new Map<string, http.Agent>();
  private closed = false;
  /** Where the URL's credentials and the extra headers may go (redirects elsewhere: not). */
  private readonly origin: URL;

  constructor(
    public url: URL,
    readonly opts: ResolvedHttpOptions,
  ) {
    this.origin = url;
  }

  private agentFor(url: URL): http.Agent {
    let agent = this.agents.get(url.protocol);
    if (!agent) {
      const common = { keepAlive: true, maxSockets: this.opts.maxInFlight + 1 };
      agent =
        url.protocol === 'https:'
          ? new https.Agent({
              ...common,
              rejectUnauthorized: this.opts.insecure !== true,
              ...(this.opts.caCert ? { ca: [...tls.rootCertificates, this.opts.caCert] } : {}),
            })
          : new http.Agent(common);
      this.agents.set(url.protocol, agent);
    }
    return agent;
  }

  get label(): string {
    return displayUrl(this.url);
  }

  /** Sends a GET (optionally for a byte range) and resolves once the headers are in. */
  request(url: URL, range?: [number, number]): Promise<Response> {
    if (this.closed) return Promise.reject(new HttpError(`${this.label}: source is closed`, false));
    const mod = url.protocol === 'https:' ? https : http;
    // Credentials (extra headers, user:password in the URL) stay with their origin: not
    // across a redirect to another host, and not from https down to http.
    const own = mayKeepCredentials(this.origin, url);
    const headers: Record<string, string> = {
      'accept-encoding': 'identity',
      'user-agent': 'diskpipe',
      ...(own ? this.opts.headers : {}),
    };
    if (!own && (url.username || url.password)) {
      url = new URL(url.href);
      url.username = '';
      url.password = '';
    }
    if (range) headers.range = `bytes=${range[0]}-${range[1] - 1}`;
    return new Promise((resolve, reject) => {
      // From the request on: a server dripping its headers or body is as stuck as a silent one.
      let answer: IncomingMessage | undefined;
      const watch = new RateWatch(this.opts, () => {
        const err = new HttpError(`${this.label}: ${slowTransferMessage(this.opts)}`, false);
        req.destroy(err);
        answer?.destroy(err);
      });
      const signal = this.opts.signal;
      const options = {
        method: 'GET',
        headers,
        agent: this.agentFor(url),
        ...(signal && { signal }),
      };
      const req = mod.request(url, options, (res) => {
        res.setTimeout(this.opts.timeoutMs, () =>
          res.destroy(new HttpError(`${this.label}: no data for ${this.opts.timeoutMs} ms`, true)),
        );
        answer = res;
        res.once('close', () => watch.stop());
        resolve({ status: res.statusCode ?? 0, headers: res.headers, message: res, watch });
      });
      req.once('close', () => {
        if (!answer) watch.stop();
      });
      req.setTimeout(this.opts.timeoutMs, () =>
        req.destroy(new HttpError(`${this.label}: no response in ${this.opts.timeoutMs} ms`, true)),
      );
      req.on('error', (err) =>
        reject(asAbortError(networkError(err, this.label), signal, `reading ${this.label}`)),
      );
      req.end();
    });
  }

  /**
   * Runs `attempt` until it succeeds, a permanent error occurs, or retries run out; waits
   * retryDelayMs·2^n (with jitter) between attempts.
   */
  async withRetries<T>(attempt: () => Promise<T>): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        throwIfAborted(this.opts.signal, `reading ${this.label}`);
        const e = err instanceof HttpError ? err : networkError(err, this.label);
        if (!e.transient || n >= this.opts.retries || this.closed) throw finalError(e, n);
        const delay = Math.min(8000, this.opts.retryDelayMs * 2 ** n);
        await sleep(delay * (0.75 + Math.random() * 0.5));
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const agent of this.agents.values()) agent.destroy();
  }
}

function finalError(e: HttpError, retries: number): HttpError {
  if (!e.transient || retries === 0) return e;
  return new HttpError(`${e.message} (after ${retries} retries)`, false, e.status, { cause: e });
}

/** Reads a response body of exactly `length` bytes into a new buffer. */
export function readBody(res: Response, length: number, label: string): Promise<Buffer> {
  const body = Buffer.allocUnsafe(length);
  let got = 0;
  return new Promise((resolve, reject) => {
    const msg = res.message;
    msg.on('data', (chunk: Buffer) => {
      res.watch.add(chunk.length);
      if (got + chunk.length > length) {
        msg.destroy();
        reject(new HttpError(`${label}: server sent more bytes than requested`, true));
        return;
      }
      chunk.copy(body, got);
      got += chunk.length;
    });
    msg.on('end', () => {
      if (got === length) resolve(body);
      else
        reject(new HttpError(`${label}: connection closed after ${got} of ${length} bytes`, true));
    });
    msg.on('error', (err) => reject(networkError(err, label)));
    // A stream destroyed with a reason (a too slow transfer) reports that reason.
    const cut = () =>
      msg.errored instanceof HttpError
        ? msg.errored
        : new HttpError(`${label}: connection closed after ${got} of ${length} bytes`, true);
    msg.on('aborted', () => reject(cut()));
    msg.on('close', () => {
      if (got < length && !msg.complete) reject(cut());
    });
  });
}

/**
 * Drops a response we do not want. The connection is closed rather than drained: the body of
 * an unwanted answer may be the whole (huge) resource.
 */
export function discard(res: Response): void {
  res.watch.stop();
  res.message.destroy();
}

/** Turns a status that is not the expected one into a clear error. */
export function statusError(res: Response, label: string): HttpError {
  const status = res.status;
  discard(res);
  const text = http.STATUS_CODES[status] ?? 'unexpected status';
  const transient = status >= 500 || status === 429 || status === 408;
  return new HttpError(`${label}: HTTP ${status} ${text}`, transient, status);
}

function networkError(err: unknown, label: string): HttpError {
  if (err instanceof HttpError) return err;
  const e = err as NodeJS.ErrnoException;
  const permanent = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ERR_INVALID_URL', 'CERT_HAS_EXPIRED']);
  const tls = typeof e?.code === 'string' && /CERT|SSL|TLS|SIGNATURE/.test(e.code);
  const what = e?.code ? `${e.code}${e.message ? ` (${e.message})` : ''}` : String(e?.message ?? e);
  return new HttpError(`${label}: ${what}`, !permanent.has(e?.code ?? '') && !tls);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
