/**
 * Server side of the transmission phase. Requests are read in order, but each runs on its own
 * and is answered when done, so pipelined requests overlap and replies go out of order. A Budget
 * bounds what one connection may have in flight; a request that breaks the rules gets an error
 * reply, and only a stream we can no longer parse (bad magic, oversize write payload) is dropped.
 *
 * One connection never holds the event loop: the server takes one request per turn, and once the
 * client has gone, the reads it left queued are dropped (writes it sent are still applied).
 */
import type { Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { NbdProtocolError } from '../../errors.js';
import type { Extent } from '../../image/types.js';
import { Budget } from '../budget.js';
import type { BufferPool } from '../buffer-pool.js';
import {
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_DISC,
  CMD_FLAG_DF,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLAG_REQ_ONE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  decodeRequest,
  encodeBlockStatus,
  encodeErrorChunk,
  encodeSimpleReply,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  REPLY_FLAG_DONE,
  REQUEST_SIZE,
  type Request,
  STATE_HOLE,
  STATE_ZERO,
} from '../protocol.js';
import { ConnectionClosedError, type WireReader, writeMessage } from '../wire.js';
import { errorValue, messageOf, type ServedExport } from './export.js';
import type { Negotiated } from './handshake.js';
import { KnownExtents } from './known-extents.js';
import { ReadGrouper } from './read-group.js';
import type { NbdServerStats } from './stats.js';
import { IdleTimer } from './timer.js';

export interface TransmissionLimits {
  /** Requests one connection may have in flight. */
  maxRequests: number;
  /** Payload and reply bytes one connection may hold in memory. */
  maxBytes: number;
  /** READ reply bytes one connection may have read and not yet handed to the socket. */
  readAhead: number;
  /** Milliseconds a connection may stay without a request before it is closed (0: never). */
  idleTimeout: number;
}

/** More descriptors than this in one BLOCK_STATUS reply are cut (the client asks again). */
const MAX_DESCRIPTORS = 1 << 16;

/** Flags each command accepts (FUA is accepted everywhere: clients are known to send it). */
const ALLOWED_FLAGS: Record<number, number> = {
  [CMD_READ]: CMD_FLAG_FUA | CMD_FLAG_DF,
  [CMD_WRITE]: CMD_FLAG_FUA,
  [CMD_FLUSH]: CMD_FLAG_FUA,
  [CMD_TRIM]: CMD_FLAG_FUA,
  [CMD_CACHE]: CMD_FLAG_FUA,
  [CMD_WRITE_ZEROES]: CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
  [CMD_BLOCK_STATUS]: CMD_FLAG_FUA | CMD_FLAG_REQ_ONE,
};

/**
 * Work one connection may start per event-loop turn before it lets others run: a few small
 * requests (a turn per 4 KiB request costs a third of the throughput) or one large one.
 */
const REQUESTS_PER_TURN = 16;
const BYTES_PER_TURN = 8 * 1024 * 1024;

/** Requests whose only effect is their reply: nothing to do once the client has gone. */
const REPLY_ONLY = new Set([CMD_READ, CMD_BLOCK_STATUS, CMD_CACHE]);

class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

export class Transmission {
  private readonly budget: Budget;
  private readonly readAhead: Budget;
  /** The client has gone (end of stream, reset or close): replies can no longer be sent. */
  private gone = false;
  /** Requests started and not yet answered. */
  private active = 0;
  private readonly idle: IdleTimer | undefined;
  /** Requests and bytes started since this connection last yielded to the event loop. */
  private turnRequests = 0;
  private turnBytes = 0;
  private readonly reads: ReadGrouper;
  /** A read-only export's last BLOCK_STATUS extents, for the READs that follow. */
  private readonly known: KnownExtents | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly reader: WireReader,
    private readonly exp: ServedExport,
    private readonly negotiated: Negotiated,
    private readonly log: (message: string) => void,
    limits: TransmissionLimits,
    private readonly pool: BufferPool,
    private readonly stats: NbdServerStats,
  ) {
    this.budget = new Budget(limits.maxRequests, limits.maxBytes);
    this.readAhead = new Budget(Number.POSITIVE_INFINITY, limits.readAhead);
    this.known = exp.writable ? undefined : new KnownExtents();
    this.reads = new ReadGrouper(exp.image, pool, socket, this.known);
    const leave = () => {
      this.gone = true;
    };
    socket.once('end', leave);
    socket.once('close', leave);
    if (socket.destroyed || socket.readableEnded) leave();
    if (limits.idleTimeout > 0) {
      this.idle = new IdleTimer(
        limits.idleTimeout,
        () => this.active > 0,
        () => {
          this.stats.idleTimeouts++;
          this.log(`no request for ${limits.idleTimeout / 1000} s; closing`);
          socket.destroy();
        },
      );
    }
  }

  /** Serves requests until the client disconnects; rejects only on a broken stream. */
  async run(): Promise<void> {
    try {
      for (;;) {
        await this.budget.acquire(0);
        let header: Uint8Array;
        try {
          header = await this.reader.read(REQUEST_SIZE);
        } catch (err) {
          this.budget.release(0);
          if (err instanceof ConnectionClosedError) return;
          throw err;
        }
        const req = decodeRequest(header);
        if (!req) {
          this.budget.release(0);
          throw new NbdProtocolError('bad request magic');
        }
        if (req.type === CMD_DISC) {
          this.budget.release(0);
          await this.budget.idle();
          this.socket.end();
          return;
        }
        this.budget.release(0);
        this.idle?.touch();
        await this.start(req);
        // Bounded work per event-loop turn: a burst of pipelined requests, or the backlog of a
        // client that has gone, must not keep accept, handshakes and other clients waiting.
        this.turnRequests++;
        if (req.type === CMD_READ || req.type === CMD_WRITE) this.turnBytes += req.length;
        if (this.turnRequests >= REQUESTS_PER_TURN || this.turnBytes >= BYTES_PER_TURN) {
          this.turnRequests = 0;
          this.turnBytes = 0;
          await nextTurn();
        }
      }
    } finally {
      this.idle?.stop();
      await this.budget.idle();
    }
  }

  /** Takes the request's bytes off the wire (writes) and runs it without waiting for it. */
  private async start(req: Request): Promise<void> {
    if (this.dropped(req)) return;
    const payload = req.type === CMD_WRITE ? req.length : 0;
    if (payload > this.exp.maxPayload) {
      // The payload cannot be skipped cheaply: a client sending it broke the size rules.
      throw new NbdProtocolError(`write of ${payload} bytes exceeds the maximum payload`);
    }
    const replyBytes = req.type === CMD_READ ? Math.min(req.length, this.exp.maxPayload) : 0;
    const held = payload + replyBytes;
    await this.budget.acquire(held);
    if (this.dropped(req)) {
      this.budget.release(held);
      return;
    }
    let data: Uint8Array | undefined;
    if (payload > 0) {
      data = this.pool.take(payload); // filled completely by readInto
      try {
        await this.reader.readInto(data);
      } catch (err) {
        this.budget.release(held);
        this.pool.give(data);
        if (err instanceof ConnectionClosedError) this.log('client left in the middle of a write');
        throw err;
      }
    }
    this.stats.requests++;
    this.active++;
    this.handle(req, data)
      .catch((err) => this.log(`request ${req.type}: ${messageOf(err)}`))
      .finally(() => {
        this.active--;
        this.idle?.touch();
        this.budget.release(held);
        if (data) this.pool.give(data);
      });
  }

  /** Counts and skips a request whose only effect is a reply nobody is left to read. */
  private dropped(req: Request): boolean {
    if (!this.gone || !REPLY_ONLY.has(req.type)) return false;
    this.stats.dropped++;
    return true;
  }

  private async handle(req: Request, data: Uint8Array | undefined): Promise<void> {
    try {
      this.check(req);
      switch (req.type) {
        case CMD_READ:
          return await this.read(req);
        case CMD_WRITE:
          await this.image.write!(data!, req.offset);
          break;
        case CMD_WRITE_ZEROES:
          await this.writeZeroes(req);
          break;
        case CMD_TRIM:
          await this.image.trim?.(req.offset, req.length);
          break;
        case CMD_FLUSH:
          await this.image.flush?.();
          break;
        case CMD_CACHE:
          break; // advisory; reads are served from the image directly
        case CMD_BLOCK_STATUS:
          return await this.blockStatus(req);
      }
      if (req.flags & CMD_FLAG_FUA && this.exp.writable) await this.image.flush?.();
      await writeMessage(this.socket, [encodeSimpleReply(req.cookie, 0)]);
    } catch (err) {
      if (err instanceof ConnectionClosedError) return;
      const errno = err instanceof RequestError ? err.errno : errorValue(err);
      if (!(err instanceof RequestError)) this.log(`I/O error: ${messageOf(err)}`);
      await this.replyError(req, errno, messageOf(err));
    }
  }

  private get image() {
    return this.exp.image;
  }

  /** Validates flags, capabilities and range; throws RequestError with the NBD error. */
  private check(req: Request): void {
    const allowed = ALLOWED_FLAGS[req.type];
    if (allowed === undefined) throw new RequestError(NBD_EINVAL, `unknown command ${req.type}`);
    if ((req.flags & ~allowed) !== 0) {
      throw new RequestError(NBD_EINVAL, `invalid flags 0x${req.flags.toString(16)}`);
    }
    if (req.flags & CMD_FLAG_DF && !this.negotiated.structured) {
      throw new RequestError(NBD_EINVAL, 'DF needs structured replies');
    }
    const writes = req.type === CMD_WRITE || req.type === CMD_WRITE_ZEROES || req.type === CMD_TRIM;
    if (writes && !this.exp.writable) throw new RequestError(NBD_EPERM, 'the export is read-only');
    if (req.type === CMD_FLUSH) return;
    if (req.offset + req.length > this.image.size) {
      const errno =
        req.type === CMD_WRITE || req.type === CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
      throw new RequestError(
        errno,
        `range ${req.offset}+${req.length} is past the end (${this.image.size})`,
      );
    }
    if (req.type === CMD_READ && req.length > this.exp.maxPayload) {
      const errno = this.negotiated.structured ? NBD_EOVERFLOW : NBD_EINVAL;
      throw new RequestError(errno, `read of ${req.length} bytes exceeds the maximum`);
    }
    if (req.type === CMD_BLOCK_STATUS) {
      if (this.negotiated.allocationContext === undefined) {
        throw new RequestError(NBD_EINVAL, 'no metadata context was negotiated');
      }
      if (req.length === 0) throw new RequestError(NBD_EINVAL, 'empty block status request');
    }
  }

  private async replyError(req: Request, errno: number, message: string): Promise<void> {
    const parts = this.negotiated.structured
      ? [encodeErrorChunk(req.cookie, REPLY_FLAG_DONE, errno, message)]
      : [encodeSimpleReply(req.cookie, errno)];
    await writeMessage(this.socket, parts).catch(() => {});
  }

  private async writeZeroes(req: Request): Promise<void> {
    // Fast zero: fail at once when zeroing would cost as much as writing.
    if (req.flags & CMD_FLAG_FAST_ZERO && !this.image.capabilities.zero) {
      throw new RequestError(NBD_ENOTSUP, 'zeroing is not faster than writing here');
    }
    await this.image.zero!(req.offset, req.length, { mayTrim: !(req.flags & CMD_FLAG_NO_HOLE) });
  }

  private async read(req: Request): Promise<void> {
    const df = (req.flags & CMD_FLAG_DF) !== 0;
    const { structured } = this.negotiated;
    await this.readAhead.acquire(req.length);
    try {
      if (this.gone) return; // left while this read waited its turn
      await this.reads.serve({ ...req, structured, df });
    } finally {
      this.readAhead.release(req.length);
    }
  }

  private async blockStatus(req: Request): Promise<void> {
    const descriptors: { length: number; flags: number }[] = [];
    const walked: Extent[] = [];
    for await (const e of this.image.extents(req.offset, req.length)) {
      if (this.known) walked.push(e);
      const flags = (e.hole ? STATE_HOLE : 0) | (e.zero ? STATE_ZERO : 0);
      const last = descriptors.at(-1);
      if (last && last.flags === flags) last.length += e.length;
      else descriptors.push({ length: e.length, flags });
      if (req.flags & CMD_FLAG_REQ_ONE || descriptors.length >= MAX_DESCRIPTORS) break;
    }
    this.known?.remember(walked);
    const id = this.negotiated.allocationContext!;
    await writeMessage(this.socket, [
      encodeBlockStatus(req.cookie, REPLY_FLAG_DONE, id, descriptors),
    ]);
  }
}
