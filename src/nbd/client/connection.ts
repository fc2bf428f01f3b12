/**
 * An NBD client connection: many requests in flight (cookies), replies in any order, simple and
 * structured replies, base:allocation block status. Replies are parsed by ReplyParser as they
 * arrive, READ payloads landing in the caller's buffer; the server is untrusted, and anything
 * inconsistent ends the connection with an NbdProtocolError instead of being believed.
 */

import { connect, type Socket } from 'node:net';
import { ioError, NbdProtocolError, NotCapableError, OutOfRangeError } from '../../errors.js';
import type { Extent } from '../../image/types.js';
import { abortError, throwIfAborted } from '../../io/abort.js';
import { alignDown, alignUp } from '../../io/bytes.js';
import { Budget } from '../budget.js';
import {
  type BlockDescriptor,
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  encodeRequest,
  STATE_HOLE,
  STATE_ZERO,
  TF_READ_ONLY,
  TF_SEND_FLUSH,
  TF_SEND_TRIM,
  TF_SEND_WRITE_ZEROES,
} from '../protocol.js';
import { formatNbdUri, type NbdAddress } from '../uri.js';
import { ConnectionClosedError, WireReader, writeMessage } from '../wire.js';
import { clientHandshake, type ExportInfo } from './handshake.js';
import { IntervalSet } from './intervals.js';
import { type Pending, ReplyParser } from './replies.js';
import { SocketInput } from './socket-input.js';

export { NbdRequestError } from './replies.js';

export interface NbdClientOptions {
  /** Requests in flight on the connection (default 64). */
  maxInFlight?: number;
  /** Seconds without an answer, while requests wait, before the server counts as dead (60). */
  timeout?: number;
  /** Bytes per READ/WRITE request (default 512 KiB; capped by the server's maximum). */
  requestSize?: number;
  /** Cancels connecting and the handshake (a server that accepts and never answers). */
  signal?: AbortSignal;
}

/**
 * Smaller requests cost us more per byte; larger ones cost qemu-nbd more (measured: it needs
 * about twice the CPU to serve the same bytes in 1 MiB requests as in 512 KiB ones).
 */
const DEFAULT_REQUEST_SIZE = 512 * 1024;
/** Longest range asked about in one BLOCK_STATUS or WRITE_ZEROES/TRIM request. */
const MAX_EFFECT_LENGTH = 2 ** 31;
const ZEROES = new Uint8Array(1 << 20);

export class NbdClient {
  private readonly pending = new Map<bigint, Pending>();
  private readonly budget: Budget;
  private nextCookie = 1n;
  private failure: Error | undefined;
  private closing = false;
  private corked = false;
  /** Resolves when the socket has closed. */
  private readonly closed: Promise<void>;
  private readonly requestSize: number;

  private constructor(
    private readonly socket: Socket,
    input: SocketInput,
    readonly info: ExportInfo,
    readonly name: string,
    opts: NbdClientOptions,
  ) {
    this.budget = new Budget(opts.maxInFlight ?? 64, Number.POSITIVE_INFINITY);
    const wanted = opts.requestSize ?? DEFAULT_REQUEST_SIZE;
    const max = Math.min(info.maxPayload, 32 * 1024 * 1024);
    this.requestSize = Math.max(info.minBlock, alignDown(Math.min(wanted, max), info.minBlock));
    socket.setTimeout((opts.timeout ?? 60) * 1000, () => {
      if (this.pending.size > 0)
        this.fail(new NbdProtocolError(`${name}: server stopped answering`));
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        // The server may hang up once we said goodbye and nothing is left to answer.
        if (!(this.closing && this.pending.size === 0)) this.fail(new ConnectionClosedError());
        resolve();
      });
    });
    const parser = new ReplyParser(name, this.pending, info.allocationContext);
    input.attach(parser, (err) => this.fail(err));
  }

  /** Connects and negotiates; the export must exist (its size must fit in 2^53). */
  static async connect(address: NbdAddress, opts: NbdClientOptions = {}): Promise<NbdClient> {
    const name = formatNbdUri(address);
    const what = `connecting to ${name}`;
    throwIfAborted(opts.signal, what);
    const input = new SocketInput();
    const socket = await open(address, name, input);
    const reader = new WireReader(socket, 'push');
    input.handshake(reader);
    const timer = setTimeout(
      () => {
        socket.destroy(new Error('handshake timed out'));
      },
      (opts.timeout ?? 60) * 1000,
    );
    const abort = () => socket.destroy(abortError(opts.signal, what));
    opts.signal?.addEventListener('abort', abort, { once: true });
    try {
      throwIfAborted(opts.signal, what);
      const info = await clientHandshake(socket, reader, address.exportName, name);
      if (!Number.isSafeInteger(info.size)) {
        throw new NbdProtocolError(`${name}: export size ${info.size} is beyond 2^53 bytes`);
      }
      return new NbdClient(socket, input, info, name, opts);
    } catch (err) {
      socket.destroy();
      throwIfAborted(opts.signal, what);
      if (err instanceof ConnectionClosedError) {
        throw new NbdProtocolError(`${name}: server closed the connection during the handshake`);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', abort);
    }
  }

  get size(): number {
    return this.info.size;
  }
  get readOnly(): boolean {
    return (this.info.flags & TF_READ_ONLY) !== 0;
  }
  get canZero(): boolean {
    return (this.info.flags & TF_SEND_WRITE_ZEROES) !== 0;
  }
  get canTrim(): boolean {
    return (this.info.flags & TF_SEND_TRIM) !== 0;
  }
  get canFlush(): boolean {
    return (this.info.flags & TF_SEND_FLUSH) !== 0;
  }
  /** The server answers base:allocation block status queries. */
  get hasAllocation(): boolean {
    return this.info.allocationContext !== undefined;
  }

  // ---- Public operations ----------------------------------------------------------------

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRange(offset, buf.length);
    const { start, end } = this.aligned(offset, buf.length);
    if (start === offset && end === offset + buf.length) return this.readSplit(buf, offset);
    const bounce = new Uint8Array(end - start);
    await this.readSplit(bounce, start);
    buf.set(bounce.subarray(offset - start, offset - start + buf.length));
  }

  async pwrite(buf: Uint8Array, offset: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, buf.length);
    const { start, end } = this.aligned(offset, buf.length);
    if (start === offset && end === offset + buf.length) return this.writeSplit(buf, offset);
    // Read-modify-write for a server with a minimum block size above our alignment.
    const bounce = new Uint8Array(end - start);
    await this.readSplit(bounce, start);
    bounce.set(buf, offset - start);
    await this.writeSplit(bounce, start);
  }

  /** Makes a range read as zeroes (WRITE_ZEROES, or zero writes if the server lacks it). */
  async zero(offset: number, length: number, mayTrim = true): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    const { start, end } = this.aligned(offset, length);
    if (!this.canZero || start !== offset || end !== offset + length) {
      for (let done = 0; done < length; done += ZEROES.length) {
        await this.pwrite(
          ZEROES.subarray(0, Math.min(ZEROES.length, length - done)),
          offset + done,
        );
      }
      return;
    }
    const flags = mayTrim ? 0 : CMD_FLAG_NO_HOLE;
    await this.splitEffect(CMD_WRITE_ZEROES, flags, offset, length);
  }

  /** Advisory discard; a no-op when the server does not take TRIM. */
  async trim(offset: number, length: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (!this.canTrim) return;
    // Only whole blocks can be trimmed: shrink the range inward.
    const a = this.info.minBlock;
    const start = alignUp(offset, a);
    const end = alignDown(offset + length, a);
    if (end > start) await this.splitEffect(CMD_TRIM, 0, start, end - start);
  }

  async flush(): Promise<void> {
    if (this.canFlush) await this.request(CMD_FLUSH, 0, 0, 0);
  }

  /** base:allocation for [offset, offset+length): ordered extents exactly covering it. */
  async *extents(offset: number, length: number): AsyncIterable<Extent> {
    this.checkRange(offset, length);
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      if (!this.hasAllocation) {
        yield { offset: pos, length: end - pos, zero: false, hole: false };
        return;
      }
      const q = this.aligned(pos, Math.min(end - pos, MAX_EFFECT_LENGTH));
      const descriptors = await this.request(CMD_BLOCK_STATUS, 0, q.start, q.end - q.start);
      let at = q.start;
      for (const d of descriptors ?? []) {
        const from = Math.max(at, pos);
        const to = Math.min(at + d.length, end);
        if (to > from) {
          yield {
            offset: from,
            length: to - from,
            zero: (d.flags & STATE_ZERO) !== 0,
            hole: (d.flags & STATE_HOLE) !== 0,
          };
        }
        at += d.length;
        if (at >= end) break;
      }
      if (at <= pos) throw new NbdProtocolError(`${this.name}: block status made no progress`);
      pos = Math.min(at, end);
    }
  }

  /** Waits for requests in flight, says goodbye (NBD_CMD_DISC) and closes the socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.budget.idle();
    if (!this.failure) {
      await writeMessage(this.socket, [
        encodeRequest({ flags: 0, type: CMD_DISC, cookie: 0n, offset: 0, length: 0 }),
      ]).catch(() => {});
      this.socket.end();
    }
    setTimeout(() => this.socket.destroy(), 1000).unref();
    await this.closed;
  }

  // ---- Requests -------------------------------------------------------------------------

  private checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0
    ) {
      throw new OutOfRangeError(`${this.name}: invalid range offset=${offset} length=${length}`);
    }
    if (offset + length > this.size) {
      throw new OutOfRangeError(
        `${this.name}: range ${offset}+${length} is past the end (${this.size})`,
      );
    }
  }

  private checkWritable(): void {
    if (this.readOnly) throw new NotCapableError(`${this.name}: the export is read-only`);
  }

  /** [offset, offset+length) widened to the server's minimum block (clipped to the size). */
  private aligned(offset: number, length: number): { start: number; end: number } {
    const a = this.info.minBlock;
    return { start: alignDown(offset, a), end: Math.min(alignUp(offset + length, a), this.size) };
  }

  private async readSplit(buf: Uint8Array, offset: number): Promise<void> {
    const parts: Promise<unknown>[] = [];
    for (let done = 0; done < buf.length; done += this.requestSize) {
      const n = Math.min(this.requestSize, buf.length - done);
      parts.push(
        this.request(CMD_READ, 0, offset + done, n, undefined, buf.subarray(done, done + n)),
      );
    }
    await Promise.all(parts);
  }

  private async writeSplit(buf: Uint8Array, offset: number): Promise<void> {
    const parts: Promise<unknown>[] = [];
    for (let done = 0; done < buf.length; done += this.requestSize) {
      const n = Math.min(this.requestSize, buf.length - done);
      parts.push(this.request(CMD_WRITE, 0, offset + done, n, buf.subarray(done, done + n)));
    }
    await Promise.all(parts);
  }

  private async splitEffect(type: number, flags: number, offset: number, length: number) {
    const step = alignDown(MAX_EFFECT_LENGTH, this.info.minBlock);
    const parts: Promise<unknown>[] = [];
    for (let done = 0; done < length; done += step) {
      parts.push(this.request(type, flags, offset + done, Math.min(step, length - done)));
    }
    await Promise.all(parts);
  }

  private async request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    payload?: Uint8Array,
    target?: Uint8Array,
  ): Promise<BlockDescriptor[] | undefined> {
    await this.budget.acquire(0);
    try {
      if (this.failure) throw this.failure;
      const cookie = this.nextCookie++;
      const answer = new Promise<BlockDescriptor[] | undefined>((resolve, reject) => {
        const p: Pending = { type, offset, length, resolve, reject };
        if (target) {
          p.target = target;
          p.filled = new IntervalSet();
        }
        this.pending.set(cookie, p);
      });
      const header = encodeRequest({ flags, type, cookie, offset, length });
      this.batchWrites();
      writeMessage(this.socket, payload ? [header, payload] : [header]).catch((err) =>
        this.fail(err),
      );
      return await answer;
    } finally {
      this.budget.release(0);
    }
  }

  /** Requests issued in one tick go out in one system call (cork until the next tick). */
  private batchWrites(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => {
      this.corked = false;
      this.socket.uncork();
    });
  }

  /** Breaks the connection: every waiting request fails with `err`. */
  private fail(err: unknown): void {
    const e =
      err instanceof ConnectionClosedError
        ? new NbdProtocolError(
            `${this.name}: ${this.closing ? 'connection closed' : 'server closed the connection'}`,
          )
        : err instanceof Error
          ? err
          : new Error(String(err));
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.socket.destroy();
  }
}

function open(address: NbdAddress, name: string, input: SocketInput): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Reads go where the input says (the caller's buffer, inside a READ payload).
    const onread = {
      buffer: () => input.nextBuffer(),
      callback: (n: number, buf: Uint8Array) => input.received(n, buf),
    };
    const socket =
      address.transport === 'unix'
        ? connect({ path: address.socket, onread })
        : connect({ host: address.host, port: address.port, noDelay: true, onread });
    const onError = (err: Error) => reject(ioError(err, `cannot connect to ${name}`));
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
