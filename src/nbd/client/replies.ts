/**
 * Parses the server's replies as the bytes arrive and puts READ payloads straight into the
 * caller's buffer. The socket (created with `onread`) asks nextBuffer() where its next read
 * should land: inside a payload that is the rest of the payload itself, so the kernel copies the
 * data into place once; between replies it is a small scratch buffer, whose bytes are fed
 * through the parser. The server is untrusted: every reply is checked against the request it
 * answers (cookie, type, bounds, overlap, lengths) before any byte of it is placed, and anything
 * inconsistent is an NbdProtocolError for the connection to fail with.
 */
import { DiskpipeError, NbdProtocolError } from '../../errors.js';
import {
  type BlockDescriptor,
  CMD_BLOCK_STATUS,
  CMD_READ,
  decodeBlockStatus,
  decodeErrorChunk,
  decodeOffsetHole,
  decodeReplyHeader,
  errorName,
  isErrorChunk,
  NBD_EPERM,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  readU64,
  replyHeaderSize,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
} from '../protocol.js';
import type { IntervalSet } from './intervals.js';

/** An error the server reported for one request (the connection stays usable). */
export class NbdRequestError extends DiskpipeError {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(errno === NBD_EPERM ? 'NOT_CAPABLE' : 'IO', message);
  }
}

/** A request waiting for its reply. */
export interface Pending {
  type: number;
  offset: number;
  length: number;
  target?: Uint8Array;
  filled?: IntervalSet;
  descriptors?: BlockDescriptor[];
  error?: { errno: number; message: string };
  resolve(descriptors?: BlockDescriptor[]): void;
  reject(err: Error): void;
}

/** Error chunks and other small chunks never need more than this. */
const MAX_SMALL_CHUNK = 64 * 1024;
/** base:allocation answers: the protocol suggests at most 2^20 descriptors. */
const MAX_STATUS_CHUNK = 4 + 8 * ((1 << 20) + 1);
/**
 * Reads between replies land here. Small, because the bytes after a data chunk's header are
 * copied out of it: the rest of the payload is read in place.
 */
const SCRATCH_SIZE = 16 * 1024;
/** Below this, reading into scratch (and copying) beats one more system call. */
const DIRECT_MIN = 4096;

const WHAT = [
  'read',
  'write',
  'disconnect',
  'flush',
  'trim',
  'cache',
  'write zeroes',
  'block status',
];

export class ReplyParser {
  private readonly head = new Uint8Array(STRUCTURED_HEADER_SIZE);
  private readonly fixed = new Uint8Array(12);
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
  /** Where the bytes of the current piece go, how many it has, and what to do when full. */
  private dest: Uint8Array = this.head;
  private at = 0;
  private onFull: () => void = () => {};
  /** The view of `dest` handed to the socket for its next read, if any. */
  private direct: Uint8Array | undefined;
  /** The reply being parsed. */
  private cookie = 0n;
  private p: Pending | undefined;
  private chunkFlags = 0;

  constructor(
    private readonly who: string,
    private readonly pending: Map<bigint, Pending>,
    private readonly allocationContext: number | undefined,
  ) {
    this.readHeader();
  }

  /** True between replies (no reply is partly received). */
  get idle(): boolean {
    return this.p === undefined && this.at === 0;
  }

  /** The buffer the socket's next read should fill. */
  nextBuffer(): Uint8Array {
    const left = this.dest.length - this.at;
    this.direct = left >= DIRECT_MIN ? this.dest.subarray(this.at) : undefined;
    return this.direct ?? this.scratch;
  }

  /** `n` bytes were read into `buf` (a buffer from nextBuffer(), or another one to copy from). */
  received(n: number, buf: Uint8Array): void {
    if (this.direct === undefined || buf !== this.direct) {
      this.feed(buf.subarray(0, n));
      return;
    }
    this.direct = undefined;
    this.at += n;
    if (this.at === this.dest.length) this.onFull();
  }

  /** Parses bytes that were received elsewhere (scratch, or left over from the handshake). */
  feed(bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length) {
      const n = Math.min(this.dest.length - this.at, bytes.length - i);
      this.dest.set(bytes.subarray(i, i + n), this.at);
      this.at += n;
      i += n;
      if (this.at === this.dest.length) this.onFull();
    }
  }

  // ---- States ---------------------------------------------------------------------------

  /** The next piece is `dest`; `then` runs once it is full (at once when it is empty). */
  private expect(dest: Uint8Array, then: () => void): void {
    this.dest = dest;
    this.at = 0;
    this.onFull = then;
    if (dest.length === 0) then();
  }

  private readHeader(): void {
    this.p = undefined;
    this.expect(this.head.subarray(0, SIMPLE_REPLY_SIZE), () => this.onHeaderStart());
  }

  private onHeaderStart(): void {
    const size = replyHeaderSize(this.head);
    if (size === undefined) {
      const magic = new DataView(this.head.buffer, this.head.byteOffset, 4).getUint32(0);
      throw this.bad(`bad reply magic 0x${magic.toString(16)}`);
    }
    if (size === SIMPLE_REPLY_SIZE) this.onHeader(size);
    else this.expect(this.head.subarray(SIMPLE_REPLY_SIZE, size), () => this.onHeader(size));
  }

  private onHeader(size: number): void {
    const header = decodeReplyHeader(this.head.subarray(0, size))!;
    const p = this.pending.get(header.cookie);
    if (!p) throw this.bad(`reply for unknown cookie ${header.cookie}`);
    this.cookie = header.cookie;
    this.p = p;
    if (header.kind === 'simple') {
      if (header.error !== 0) {
        p.error = { errno: header.error, message: '' };
        this.finish(p);
      } else if (p.type === CMD_BLOCK_STATUS) {
        throw this.bad('block status answered with a simple reply');
      } else if (p.type === CMD_READ) {
        this.expect(p.target!, () => this.finish(p));
      } else {
        this.finish(p);
      }
      return;
    }
    this.chunkFlags = header.flags;
    this.chunk(p, header.type, header.length);
  }

  private chunk(p: Pending, type: number, length: number): void {
    switch (type) {
      case REPLY_TYPE_OFFSET_DATA:
        if (p.type !== CMD_READ || length < 9 || length - 8 > p.length) {
          throw this.bad(`unexpected data chunk of ${length} bytes`);
        }
        this.expect(this.fixed.subarray(0, 8), () => {
          const offset = readU64(this.fixed, 0);
          const n = length - 8;
          this.place(p, offset, n);
          const at = offset - p.offset;
          this.expect(p.target!.subarray(at, at + n), () => this.endChunk(p));
        });
        return;
      case REPLY_TYPE_OFFSET_HOLE:
        if (p.type !== CMD_READ || length !== 12) throw this.bad('unexpected hole chunk');
        this.expect(this.fixed, () => {
          const hole = decodeOffsetHole(this.fixed);
          if (!hole || hole.length === 0) throw this.bad('malformed hole chunk');
          this.place(p, hole.offset, hole.length);
          p.target!.fill(0, hole.offset - p.offset, hole.offset - p.offset + hole.length);
          this.endChunk(p);
        });
        return;
      case REPLY_TYPE_BLOCK_STATUS:
        if (p.type !== CMD_BLOCK_STATUS || length > MAX_STATUS_CHUNK) {
          throw this.bad(`unexpected block status chunk of ${length} bytes`);
        }
        this.payload(length, (bytes) => {
          const status = decodeBlockStatus(bytes);
          if (!status) throw this.bad('malformed block status chunk');
          if (status.contextId === this.allocationContext) {
            if (p.descriptors) throw this.bad('two block status chunks for one context');
            p.descriptors = status.descriptors;
          }
        });
        return;
      case REPLY_TYPE_NONE:
        if (length !== 0) throw this.bad('non-empty NONE chunk');
        this.endChunk(p);
        return;
      default:
        if (!isErrorChunk(type)) throw this.bad(`unknown reply chunk type ${type}`);
        if (length > MAX_SMALL_CHUNK) throw this.bad(`error chunk of ${length} bytes`);
        this.payload(length, (bytes) => {
          const e = decodeErrorChunk(type, bytes);
          if (!e) throw this.bad('malformed error chunk');
          p.error ??= { errno: e.error, message: e.message };
        });
    }
  }

  /** Collects a chunk payload of `length` bytes (bounded by the caller) and hands it on. */
  private payload(length: number, use: (bytes: Uint8Array) => void): void {
    const bytes = new Uint8Array(length);
    this.expect(bytes, () => {
      use(bytes);
      this.endChunk(this.p!);
    });
  }

  private endChunk(p: Pending): void {
    if (!(this.chunkFlags & REPLY_FLAG_DONE)) {
      this.readHeader();
      return;
    }
    this.checkComplete(p);
    this.finish(p);
  }

  /** The reply is complete: settle its request and wait for the next header. */
  private finish(p: Pending): void {
    this.pending.delete(this.cookie);
    this.readHeader();
    if (p.error) p.reject(this.requestError(p, p.error.errno, p.error.message));
    else p.resolve(p.descriptors);
  }

  // ---- Checks ---------------------------------------------------------------------------

  /** Checks a content chunk lies inside the request and overlaps nothing already received. */
  private place(p: Pending, offset: number, length: number): void {
    if (offset < p.offset || offset + length > p.offset + p.length) {
      throw this.bad('reply chunk outside the requested range');
    }
    if (!p.filled!.add(offset, offset + length)) throw this.bad('overlapping reply chunks');
  }

  /** A successful structured reply must have delivered everything the request asked for. */
  private checkComplete(p: Pending): void {
    if (p.error) return;
    if (p.type === CMD_READ && p.filled!.covered !== p.length) {
      throw this.bad(`read reply covers ${p.filled!.covered} of ${p.length} bytes`);
    }
    if (p.type === CMD_BLOCK_STATUS && !p.descriptors) {
      throw this.bad('block status reply without base:allocation');
    }
  }

  private bad(what: string): NbdProtocolError {
    return new NbdProtocolError(`${this.who}: ${what}`);
  }

  private requestError(p: Pending, errno: number, message: string): NbdRequestError {
    const detail = message ? `: ${message}` : '';
    return new NbdRequestError(
      errno,
      `${this.who}: ${WHAT[p.type]} of ${p.length} bytes at ${p.offset} failed: ${errorName(errno)}${detail}`,
    );
  }
}
