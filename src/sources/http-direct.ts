/**
 * A GET over plain HTTP/1.1 on a socket of its own, whose body is read into one reused buffer
 * (net's `onread`) and handed to the consumer as views: for downloads, where node:http costs
 * more CPU than hashing the bytes (it allocates a buffer for every 64 KiB read, copies each body
 * piece into another one and emits stream events for both: 1 GiB over loopback took 0.73–0.92 s
 * of user time and 13k–150k page faults that way, 0.19–0.30 s and 3.4k faults through one
 * reused buffer). One request per connection (`Connection: close`); https stays on node:https.
 * The head is parsed here (status line, header fields); the body is length-delimited, chunked
 * or read until the server closes, as RFC 9112 section 6 says.
 */
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { HttpError } from '../errors.js';
import { networkError } from './http-errors.js';

/** Bytes one socket read may return. */
const READ_BUFFER = 1024 * 1024;
/**
 * A consumer's read target with less room than this is not used (the read goes to our own
 * buffer and the consumer copies it): reads stay large.
 */
const MIN_TARGET = 64 * 1024;
/**
 * A response head longer than this is refused (node:http's default limit is 16 KiB); so are
 * 1xx heads and chunked trailers adding up to more: a server sending them forever would
 * otherwise keep the transfer alive (and the rate watch fed) without a body byte.
 */
const MAX_HEAD = 64 * 1024;
/** A chunk-size line (with extensions) or trailer line longer than this is refused. */
const MAX_LINE = 4096;

/** Takes a view of body bytes, valid during the call and until the returned promise settles. */
export type BodyConsumer = (chunk: Uint8Array) => Promise<void> | undefined;

/**
 * Where the consumer wants the next socket read to land (e.g. the free part of its write
 * buffer): a body chunk read there is given to the consumer as a view of it, so the consumer
 * need not copy it. Asked after every read; too small a target is not used.
 */
export type ReadTarget = () => Uint8Array;

export interface DirectBody {
  /**
   * Delivers the body in order; resolves at its end, rejects as soon as it cannot go on.
   * Length- and close-delimited bodies are read into `target` when given.
   */
  pump(consumer: BodyConsumer, target?: ReadTarget): Promise<void>;
  /** Drops the answer (closes the connection). */
  discard(): void;
}

/** Why a body stopped: the server closed the connection before its end. */
export const CLOSED_EARLY = Symbol('closed early');

/** The consumer failed (its error, not the transfer's): pump rejects with this. */
export class ConsumerFailure {
  constructor(readonly error: unknown) {}
}

export interface DirectRequest {
  url: URL;
  /** Request header fields (lower-case names); Host and Connection are added. */
  headers: Record<string, string>;
  label: string;
  timeoutMs: number;
  /** Told the bytes of every read (a minimum-rate watch). */
  onBytes: (n: number) => void;
  /** Told once when the connection is closed, whatever the reason. */
  onClose: () => void;
}

export interface DirectHead {
  status: number;
  headers: IncomingHttpHeaders;
}

export interface DirectGet extends DirectBody {
  /** The final (non-1xx) answer's head. */
  readonly head: Promise<DirectHead>;
  /** Ends the exchange with `reason` (abort, too slow): the head or a pump rejects with it. */
  cut(reason: Error): void;
}

/** Sends the request at once. */
export function directGet(req: DirectRequest): DirectGet {
  return new DirectExchange(req);
}

type Framing =
  | { kind: 'length'; left: number }
  | { kind: 'chunked'; state: 'size' | 'data' | 'data-end' | 'trailer' | 'done'; left: number }
  | { kind: 'close' };

class DirectExchange implements DirectGet {
  readonly head: Promise<DirectHead>;
  private readonly socket: net.Socket;
  private readonly buffer = Buffer.allocUnsafe(READ_BUFFER);
  private headBytes = Buffer.alloc(0);
  private resolveHead!: (head: DirectHead) => void;
  private rejectHead!: (err: unknown) => void;
  private headDone = false;
  private framing: Framing = { kind: 'close' };
  /** Body bytes that came with the head, delivered first. */
  private early: Buffer | undefined;
  private consumer: BodyConsumer | undefined;
  private target: ReadTarget | undefined;
  private settle: { resolve(): void; reject(err: unknown): void } | undefined;
  /** Delivering: the socket is paused or the read buffer is lent to the consumer. */
  private busy = false;
  /** The consumer's pending promise: the pump settles only after it (the consumer is not
   * re-entered, e.g. a writer finished while its last write still waits). */
  private waiting: Promise<void> | undefined;
  private ended = false;
  private finished = false;
  private succeeded = false;
  private failure: unknown;
  /** The line being read (chunk size or trailer). */
  private line = '';
  /** Bytes of 1xx heads skipped, then of trailer fields read (both bounded by MAX_HEAD). */
  private extraHeadBytes = 0;

  constructor(private readonly req: DirectRequest) {
    this.head = new Promise<DirectHead>((resolve, reject) => {
      this.resolveHead = resolve;
      this.rejectHead = reject;
    });
    const { url } = req;
    const request = requestText(url, req.headers);
    this.socket = net.connect({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(url.port || 80),
      onread: { buffer: () => this.readBuffer(), callback: (n, buf) => this.onRead(n, buf) },
    });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(req.timeoutMs, () => {
      const what = this.headDone ? 'no data for' : 'no response in';
      this.fail(new HttpError(`${req.label}: ${what} ${req.timeoutMs} ms (timeout)`, true));
    });
    this.socket.on('connect', () => this.socket.write(request));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => {
      this.onEnd();
      req.onClose();
    });
  }

  pump(consumer: BodyConsumer, target?: ReadTarget): Promise<void> {
    if (this.consumer) return Promise.reject(new Error('body already read'));
    this.consumer = consumer;
    this.target = target;
    const done = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    if (this.failure !== undefined) this.settle?.reject(this.failure);
    else if (this.succeeded) this.settle?.resolve();
    else {
      const early = this.early;
      this.early = undefined;
      this.busy = true;
      if (this.continueWith(early ?? Buffer.alloc(0), 0)) this.resumeReading();
    }
    return done;
  }

  discard(): void {
    this.finished = true;
    this.socket.destroy();
  }

  cut(reason: Error): void {
    this.fail(reason);
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = err;
    this.socket.destroy();
    if (this.headDone) {
      const reject = () => this.settle?.reject(err);
      // After the current call: a consumer that cut the exchange itself (an abort from its
      // progress callback) has returned its promise by then.
      queueMicrotask(() => {
        if (this.waiting) this.waiting.then(reject, reject);
        else reject();
      });
    } else if (err === CLOSED_EARLY)
      this.rejectHead(
        new HttpError(`${this.req.label}: connection closed before the answer`, true),
      );
    else this.rejectHead(networkError(err, this.req.label));
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.finished || this.busy || !this.consumer) {
      if (!this.headDone) this.fail(CLOSED_EARLY);
      return;
    }
    this.end();
  }

  /** The server closed: the end of a close-delimited body, else a cut. */
  private end(): void {
    if (this.framing.kind === 'close') this.complete();
    else this.fail(CLOSED_EARLY);
  }

  private complete(): void {
    if (this.finished) return;
    this.finished = true;
    this.succeeded = true;
    this.socket.destroy();
    this.settle?.resolve();
  }

  /** The framing has seen the body's last byte. */
  private bodyDone(): boolean {
    const f = this.framing;
    return (f.kind === 'length' && f.left === 0) || (f.kind === 'chunked' && f.state === 'done');
  }

  /**
   * The buffer of the next socket read (asked right after each read): the consumer's target
   * for a body whose bytes are all its own (no chunk framing in between), else ours. Only
   * once every byte read so far was delivered: the consumer's state (where its target is)
   * changes with deliveries only, so the target is still right when the next read lands.
   * While a delivery waits, the socket is paused and its next read comes into our buffer.
   */
  private readBuffer(): Uint8Array {
    const settled = this.headDone && !this.busy && !this.finished;
    const target = settled && this.framing.kind !== 'chunked' ? this.target?.() : undefined;
    return target && target.length >= MIN_TARGET ? target : this.buffer;
  }

  private onRead(n: number, into: Uint8Array): boolean {
    if (this.finished) return false;
    this.req.onBytes(n);
    const buf = Buffer.from(into.buffer, into.byteOffset, n);
    if (!this.headDone) return this.readHead(buf);
    this.busy = true;
    return this.continueWith(buf, 0, n);
  }

  /** Accumulates the head; the bytes after it are the body's first (kept until pumped). */
  private readHead(bytes: Buffer): boolean {
    this.headBytes = Buffer.concat([this.headBytes, bytes]);
    for (;;) {
      const end = this.headBytes.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.headBytes.length > MAX_HEAD)
          this.fail(this.protocolError('response head too large'));
        return true;
      }
      const text = this.headBytes.subarray(0, end).toString('latin1');
      const rest = this.headBytes.subarray(end + 4);
      let parsed: { status: number; headers: IncomingHttpHeaders };
      try {
        parsed = parseHead(text, this.req.label);
        this.framing = framingOf(parsed.status, parsed.headers, this.req.label);
      } catch (err) {
        this.fail(err);
        return false;
      }
      // 1xx answers (100 Continue, 103 Early Hints) come before the real one.
      if (parsed.status < 200) {
        this.extraHeadBytes += end + 4;
        if (this.extraHeadBytes > MAX_HEAD) {
          this.fail(this.protocolError('too many 1xx answers'));
          return false;
        }
        // A view: headBytes is our own copy (concat), and a copy per 1xx would cost O(n²).
        this.headBytes = rest;
        continue;
      }
      this.headDone = true;
      this.early = Buffer.from(rest);
      this.headBytes = Buffer.alloc(0);
      this.resolveHead(parsed);
      if (this.bodyDone()) this.complete();
      // Nothing more is read until the body is asked for.
      return false;
    }
  }

  /**
   * Delivers buf[from, to) through the framing; when the consumer asks to wait, the socket
   * stays paused (the buffer must not change) and delivery resumes when it is done.
   */
  private continueWith(buf: Buffer, from: number, to = buf.length): boolean {
    let pos = from;
    while (pos < to && !this.finished && !this.bodyDone()) {
      const taken = this.step(buf, pos, to);
      if (taken === undefined) return false;
      const [next, waiting] = taken;
      pos = next;
      if (waiting) {
        waiting.then(
          () => {
            this.waiting = undefined;
            if (this.continueWith(buf, pos, to)) this.resumeReading();
          },
          (err: unknown) => {
            this.waiting = undefined;
            this.fail(new ConsumerFailure(err));
          },
        );
        return false;
      }
    }
    this.busy = false;
    if (this.finished) return false;
    if (this.bodyDone()) {
      // Bytes past the body's end (none are expected: the connection closes) are dropped.
      this.complete();
      return false;
    }
    if (this.ended) {
      this.end();
      return false;
    }
    return true;
  }

  private resumeReading(): boolean {
    this.socket.resume();
    return true;
  }

  /**
   * Handles bytes from buf[pos, to) under the framing: returns the next position and the
   * consumer's promise if it must be awaited; undefined after a protocol error.
   */
  private step(
    buf: Buffer,
    pos: number,
    to: number,
  ): [number, Promise<void> | undefined] | undefined {
    const f = this.framing;
    const consumer = this.consumer!;
    const give = (end: number): [number, Promise<void> | undefined] | undefined => {
      try {
        const waiting = consumer(buf.subarray(pos, end));
        if (waiting) this.waiting = waiting;
        return [end, waiting];
      } catch (err) {
        this.fail(new ConsumerFailure(err));
        return undefined;
      }
    };
    if (f.kind === 'close') return give(to);
    if (f.kind === 'length') {
      const n = Math.min(f.left, to - pos);
      f.left -= n;
      return give(pos + n);
    }
    if (f.state === 'data') {
      const n = Math.min(f.left, to - pos);
      f.left -= n;
      if (f.left === 0) f.state = 'data-end';
      return give(pos + n);
    }
    // A line: chunk size, the CRLF after a chunk's data, or a trailer field.
    const nl = buf.indexOf(10, pos);
    const stop = nl < 0 || nl >= to ? to : nl + 1;
    this.line += buf.toString('latin1', pos, stop);
    if (this.line.length > MAX_LINE) {
      this.fail(this.protocolError('chunk line too long'));
      return undefined;
    }
    if (!this.line.endsWith('\n')) return [stop, undefined];
    const line = this.line.replace(/\r?\n$/, '');
    this.line = '';
    if (f.state === 'data-end') {
      if (line !== '') {
        this.fail(this.protocolError('bad chunk end'));
        return undefined;
      }
      f.state = 'size';
    } else if (f.state === 'size') {
      const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (!m) {
        this.fail(this.protocolError('bad chunk size'));
        return undefined;
      }
      f.left = Number.parseInt(m[1]!, 16);
      f.state = f.left === 0 ? 'trailer' : 'data';
    } else if (line === '') {
      f.state = 'done';
    } else {
      this.extraHeadBytes += line.length;
      if (this.extraHeadBytes > MAX_HEAD) {
        this.fail(this.protocolError('trailer section too large'));
        return undefined;
      }
    }
    return [stop, undefined];
  }

  private protocolError(what: string): HttpError {
    return new HttpError(`${this.req.label}: invalid HTTP response (${what})`, true);
  }
}

/** The request's text; a header value with a line break or NUL is refused, never sent. */
function requestText(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n\0]/.test(value) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      throw new HttpError(`invalid character in HTTP header ${name}`, false);
    lines.push(`${name}: ${value}`);
  }
  lines.push('connection: close', '', '');
  return lines.join('\r\n');
}

/** Fields that may appear once; a repeated one keeps its first value, as node:http does. */
const SINGLE = new Set([
  'content-length',
  'content-type',
  'content-range',
  'etag',
  'last-modified',
  'location',
]);

function parseHead(text: string, label: string): { status: number; headers: IncomingHttpHeaders } {
  const bad = (what: string) => new HttpError(`${label}: invalid HTTP response (${what})`, true);
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) throw bad('status line');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw bad('header field');
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length' && headers[name] !== undefined && headers[name] !== value)
      throw bad('conflicting Content-Length');
    if (headers[name] === undefined) headers[name] = value;
    else if (!SINGLE.has(name)) headers[name] += `, ${value}`;
  }
  return { status: Number(m[1]), headers };
}

function framingOf(status: number, headers: IncomingHttpHeaders, label: string): Framing {
  if (status < 200 || status === 204 || status === 304) return { kind: 'length', left: 0 };
  const te = headers['transfer-encoding'];
  if (typeof te === 'string') {
    if (te.toLowerCase() !== 'chunked')
      throw new HttpError(`${label}: unsupported Transfer-Encoding ${te}`, false);
    // RFC 9112 6.3: the coding overrides the length, and such an answer ought to be an error
    // (node:http refuses it too); accepting it left callers a Content-Length that is not the body's.
    if (headers['content-length'] !== undefined)
      throw new HttpError(
        `${label}: invalid HTTP response (both Transfer-Encoding and Content-Length)`,
        true,
      );
    return { kind: 'chunked', state: 'size', left: 0 };
  }
  const cl = headers['content-length'];
  if (typeof cl === 'string') {
    if (!/^\d{1,16}$/.test(cl))
      throw new HttpError(`${label}: invalid HTTP response (Content-Length)`, true);
    return { kind: 'length', left: Number(cl) };
  }
  return { kind: 'close' };
}
