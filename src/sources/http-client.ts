/**
 * diskpipe's one HTTP(S) client, on node:http/https: range reads (sources/http.ts) and downloads
 * (cache/download.ts) share its retry policy, redirect and credential rule, timeouts, minimum
 * transfer rate, CA options, keep-alive pool and AbortSignal. Bodies are read with
 * http-body.ts; what identifies a version of a resource is in http-validators.ts. A download
 * (`download`) over plain http reads its body through http-direct.ts instead of node:http.
 * Why not undici (the engine of Node's fetch): it would be a new dependency for what this
 * file does in ~250 lines, and the per-request rules diskpipe needs (credentials by origin,
 * rate and idle limits that cut a stalled body, certificate errors that are final) sit on top
 * of any client anyway; Node's built-in fetch cannot take a CA without undici's Agent, and
 * its web streams cost more CPU per byte than an IncomingMessage.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { AbortError, DiskpipeError, HttpError, UsageError } from '../errors.js';
import { basicAuthorization, displayUrl, mayKeepCredentials } from './credentials.js';
import { type DirectBody, directGet } from './http-direct.js';
import { finalError, networkError } from './http-errors.js';
import { RATE_DEFAULTS, RateWatch, slowTransferMessage } from './min-rate.js';

export interface HttpClientOptions {
  /** Attempts after the first one for transient failures (network errors, 5xx, 429, 408). */
  retries?: number;
  /** First retry delay in ms; doubles on each retry (capped at 8 s), ±25% jitter. */
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
  /** Cancels requests in flight and retry waits with an AbortError. */
  signal?: AbortSignal;
}

type Numeric = 'retries' | 'retryDelayMs' | 'timeoutMs' | 'minRate' | 'minRateWindowMs';
export type ResolvedClientOptions = Required<Pick<HttpClientOptions, Numeric>> &
  Omit<HttpClientOptions, Numeric>;

export const CLIENT_DEFAULTS: Required<Pick<HttpClientOptions, Numeric>> = {
  retries: 4,
  retryDelayMs: 250,
  timeoutMs: 30_000,
  ...RATE_DEFAULTS,
};

export const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_RETRY_DELAY = 8000;

export interface RequestOptions {
  /** Bytes [start, end), or [start] for everything from start on. */
  range?: readonly [number, number?] | undefined;
  /** Headers of this request (If-Range, If-None-Match...). */
  headers?: Record<string, string> | undefined;
}

interface ResponseHead {
  status: number;
  headers: IncomingHttpHeaders;
  /** The URL that answered (after redirects), without credentials. */
  url: URL;
  /** Counts body bytes against the minimum rate; stopped when the body is done. */
  watch: RateWatch;
}

/** An answer whose headers are in; its body is read with http-body.ts. */
export interface HttpResponse extends ResponseHead {
  message: IncomingMessage;
}

/** An answer whose body comes straight from its own socket (http-direct.ts). */
export interface DirectResponse extends ResponseHead {
  body: DirectBody;
}

export type AnyResponse = HttpResponse | DirectResponse;

export class HttpClient {
  readonly opts: ResolvedClientOptions;
  /** The URL as given, without its user name and password. */
  readonly url: URL;
  private readonly agents = new Map<string, http.Agent>();
  private readonly authorization: string | undefined;
  private closed = false;

  /** `maxSockets`: connections kept per scheme (one per request in flight). */
  constructor(
    url: URL | string,
    options: HttpClientOptions = {},
    private readonly maxSockets = 1,
  ) {
    this.url = parseUrl(url);
    this.authorization = basicAuthorization(String(url));
    this.opts = resolveClientOptions(options);
  }

  get label(): string {
    return displayUrl(this.url);
  }

  /**
   * Sends a GET and resolves once the final answer's headers are in, following up to
   * MAX_REDIRECTS redirects. Credentials (user:password of the URL, extra headers) go only to
   * the URL's own origin: not across a redirect to another host, nor from https down to http.
   */
  request(ro: RequestOptions = {}, url: URL = this.url): Promise<HttpResponse> {
    return this.follow(url, (target) => this.send(target, ro));
  }

  /**
   * `request` for a whole-resource download: an http: answer's body is read by http-direct.ts
   * (one reused buffer, no stream events), an https: one by node:https.
   */
  download(ro: RequestOptions = {}): Promise<AnyResponse> {
    return this.follow<AnyResponse>(this.url, (target) =>
      target.protocol === 'http:' ? this.sendDirect(target, ro) : this.send(target, ro),
    );
  }

  private async follow<R extends AnyResponse>(
    url: URL,
    send: (target: URL) => Promise<R>,
  ): Promise<R> {
    let target = url;
    for (let hops = 0; ; hops++) {
      const res = await send(target);
      const location = res.headers.location;
      if (!REDIRECTS.has(res.status) || !location) return res;
      res.watch.stop();
      if ('body' in res) res.body.discard();
      else res.message.destroy();
      const label = displayUrl(target);
      if (hops >= MAX_REDIRECTS) throw new HttpError(`${label}: too many redirects`, false);
      let next: URL;
      try {
        next = new URL(location, target);
      } catch {
        throw new HttpError(`${label}: invalid redirect location`, false);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:')
        throw new HttpError(`${label}: redirect to unsupported URL ${displayUrl(next)}`, false);
      target = parseUrl(next);
    }
  }

  /**
   * Runs `attempt` until it succeeds, a permanent error occurs, or retries run out; waits
   * retryDelayMs·2^n (±25%) between attempts. The one retry policy of ranges and downloads.
   */
  async withRetries<T>(attempt: (n: number) => Promise<T>): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt(n);
      } catch (err) {
        const e = err instanceof DiskpipeError ? err : networkError(err, this.label);
        const again = e instanceof HttpError && e.transient && n < this.opts.retries;
        if (!again || this.closed || this.opts.signal?.aborted) throw finalError(e, n);
        await this.pause(n);
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const agent of this.agents.values()) agent.destroy();
  }

  /** The request's header fields: credentials only for the URL's own origin. */
  private headersFor(url: URL, ro: RequestOptions): Record<string, string> {
    const own = mayKeepCredentials(this.url, url);
    const headers: Record<string, string> = {
      'accept-encoding': 'identity',
      'user-agent': 'diskpipe',
      ...(own && this.authorization ? { authorization: this.authorization } : {}),
      ...(own ? this.opts.headers : {}),
      ...ro.headers,
    };
    if (ro.range)
      headers.range = `bytes=${ro.range[0]}-${ro.range[1] === undefined ? '' : ro.range[1] - 1}`;
    return headers;
  }

  /** Why a request cannot be sent at all (closed client, aborted signal). */
  private refusal(label: string): Error | undefined {
    if (this.closed) return new HttpError(`${label}: source is closed`, false);
    if (this.opts.signal?.aborted) return aborted(label);
    return undefined;
  }

  private async sendDirect(url: URL, ro: RequestOptions): Promise<DirectResponse> {
    const label = displayUrl(url);
    const refused = this.refusal(label);
    if (refused) throw refused;
    const signal = this.opts.signal;
    // The socket's events come later: the watch and the abort listener exist by then (and
    // none is left behind when the request cannot even be sent).
    const get = directGet({
      url,
      headers: this.headersFor(url, ro),
      label,
      timeoutMs: this.opts.timeoutMs,
      onBytes: (n) => watch.add(n),
      onClose: () => {
        watch.stop();
        signal?.removeEventListener('abort', onAbort);
      },
    });
    // From the request on: a server dripping its headers or body is as stuck as a silent one.
    const watch = new RateWatch(this.opts, () =>
      get.cut(new HttpError(`${label}: ${slowTransferMessage(this.opts)}`, false)),
    );
    const onAbort = () => get.cut(aborted(label));
    signal?.addEventListener('abort', onAbort, { once: true });
    const head = await get.head;
    return { ...head, url, body: get, watch };
  }

  private send(url: URL, ro: RequestOptions): Promise<HttpResponse> {
    const label = displayUrl(url);
    const refused = this.refusal(label);
    if (refused) return Promise.reject(refused);
    const signal = this.opts.signal;
    const mod = url.protocol === 'https:' ? https : http;
    const headers = this.headersFor(url, ro);
    return new Promise((resolve, reject) => {
      // From the request on: a server dripping its headers or body is as stuck as a silent one.
      let answer: IncomingMessage | undefined;
      const cut = (err: Error) => {
        req.destroy(err);
        answer?.destroy(err);
      };
      const watch = new RateWatch(this.opts, () =>
        cut(new HttpError(`${label}: ${slowTransferMessage(this.opts)}`, false)),
      );
      const onAbort = () => cut(aborted(label));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => {
        watch.stop();
        signal?.removeEventListener('abort', onAbort);
      };
      const req = mod.request(url, { method: 'GET', headers, agent: this.agentFor(url) }, (res) => {
        res.setTimeout(this.opts.timeoutMs, () =>
          res.destroy(
            new HttpError(`${label}: no data for ${this.opts.timeoutMs} ms (timeout)`, true),
          ),
        );
        answer = res;
        res.once('close', done);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, url, message: res, watch });
      });
      req.once('close', () => {
        if (!answer) done();
      });
      req.setTimeout(this.opts.timeoutMs, () =>
        req.destroy(
          new HttpError(`${label}: no response in ${this.opts.timeoutMs} ms (timeout)`, true),
        ),
      );
      req.on('error', (err) => reject(networkError(err, label)));
      req.end();
    });
  }

  private agentFor(url: URL): http.Agent {
    let agent = this.agents.get(url.protocol);
    if (!agent) {
      const common = { keepAlive: true, maxSockets: this.maxSockets };
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

  private async pause(n: number): Promise<void> {
    const delay = Math.min(MAX_RETRY_DELAY, this.opts.retryDelayMs * 2 ** n);
    const signal = this.opts.signal;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(aborted(this.label));
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        delay * (0.75 + Math.random() * 0.5),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Checks and fills in client options (a bad number is a UsageError, never a hang). */
export function resolveClientOptions(o: HttpClientOptions): ResolvedClientOptions {
  const r: ResolvedClientOptions = { ...CLIENT_DEFAULTS };
  if (o.headers) r.headers = o.headers;
  if (o.insecure) r.insecure = true;
  if (o.caCert !== undefined) r.caCert = o.caCert;
  if (o.signal) r.signal = o.signal;
  for (const key of Object.keys(CLIENT_DEFAULTS) as Numeric[]) {
    const v = o[key];
    if (v === undefined) continue;
    const least = key === 'timeoutMs' || key === 'minRateWindowMs' ? 1 : 0;
    if (!Number.isSafeInteger(v) || v < least)
      throw new UsageError(`invalid HTTP option ${key}=${v}`);
    r[key] = v;
  }
  return r;
}

/** The URL to request: http(s) only, user name and password removed (they go as a header). */
function parseUrl(given: URL | string): URL {
  let url: URL;
  try {
    url = new URL(String(given));
  } catch {
    throw new UsageError(`invalid URL '${displayUrl(String(given))}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`not an http(s) URL: '${displayUrl(url)}'`);
  url.username = '';
  url.password = '';
  return url;
}

function aborted(label: string): AbortError {
  return new AbortError(`${label}: aborted`);
}
