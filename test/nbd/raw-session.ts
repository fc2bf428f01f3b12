/**
 * A hand-driven NBD session for tests that must send exactly the bytes they choose (hostile
 * clients, pipelining): no checks, no retries, just framing.
 */
import { connect, type Socket } from 'node:net';
import * as P from '../../src/nbd/protocol.js';
import { WireReader } from '../../src/nbd/wire.js';

export class RawSession {
  readonly reader: WireReader;
  private constructor(readonly socket: Socket) {
    this.reader = new WireReader(socket);
  }

  static async open(port: number): Promise<RawSession> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    return new RawSession(socket);
  }

  send(...parts: Uint8Array[]): void {
    for (const p of parts) this.socket.write(p);
  }

  async greeting(): Promise<number | undefined> {
    return P.decodeGreeting(await this.reader.read(18));
  }

  sendFlags(flags: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, flags);
    this.send(b);
  }

  async optionReply(): Promise<{ option: number; type: number; data: Uint8Array }> {
    const h = P.decodeOptionReplyHeader(await this.reader.read(P.OPTION_REPLY_HEADER_SIZE));
    if (!h) throw new Error('bad option reply');
    return { option: h.option, type: h.type, data: (await this.reader.read(h.length)).slice() };
  }

  /** Handshake to transmission: optional structured replies and base:allocation, then GO. */
  async negotiate(opts: { structured?: boolean; allocation?: boolean; name?: string } = {}) {
    await this.greeting();
    this.sendFlags(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES);
    const name = opts.name ?? '';
    if (opts.structured) {
      this.send(P.encodeOption(P.OPT_STRUCTURED_REPLY));
      await this.optionReply();
    }
    if (opts.allocation) {
      const q = P.encodeMetaContextRequest({ name, queries: [P.META_BASE_ALLOCATION] });
      this.send(P.encodeOption(P.OPT_SET_META_CONTEXT, q));
      for (;;) {
        const r = await this.optionReply();
        if (r.type !== P.REP_META_CONTEXT) break; // ACK, or an error: no context then
      }
    }
    this.send(P.encodeOption(P.OPT_GO, P.encodeInfoRequest({ name, requests: [] })));
    let size = 0;
    let flags = 0;
    for (;;) {
      const r = await this.optionReply();
      if (r.type === P.REP_INFO) {
        const info = P.decodeInfo(r.data);
        if (info?.type === P.INFO_EXPORT) ({ size, flags } = info);
      } else if (r.type === P.REP_ACK) {
        return { size, flags };
      } else {
        throw new Error(`GO failed: 0x${r.type.toString(16)}`);
      }
    }
  }

  request(
    type: number,
    offset: number,
    length: number,
    cookie: bigint,
    flags = 0,
    payload?: Uint8Array,
  ) {
    this.send(P.encodeRequest({ type, flags, cookie, offset, length }));
    if (payload) this.send(payload);
  }

  /** Reads one simple reply (with `dataLength` bytes of data when it succeeded). */
  async simpleReply(dataLength = 0): Promise<{ cookie: bigint; error: number; data?: Uint8Array }> {
    const h = P.decodeReplyHeader(await this.reader.read(P.SIMPLE_REPLY_SIZE));
    if (h?.kind !== 'simple') throw new Error('expected a simple reply');
    if (h.error !== 0 || dataLength === 0) return { cookie: h.cookie, error: h.error };
    return { cookie: h.cookie, error: 0, data: (await this.reader.read(dataLength)).slice() };
  }

  /** Reads one structured chunk (header and raw payload). */
  async chunk(): Promise<{ cookie: bigint; type: number; flags: number; payload: Uint8Array }> {
    const h = P.decodeReplyHeader(await this.reader.read(P.STRUCTURED_HEADER_SIZE));
    if (h?.kind !== 'structured') throw new Error('expected a structured reply');
    return {
      cookie: h.cookie,
      type: h.type,
      flags: h.flags,
      payload: (await this.reader.read(h.length)).slice(),
    };
  }

  /** Reads one reply of a structured session: a simple reply (no data) or a chunk. */
  async anyReply(): Promise<{ cookie: bigint; done: boolean }> {
    const head = await this.reader.read(P.SIMPLE_REPLY_SIZE);
    const size = P.replyHeaderSize(head);
    if (size === P.SIMPLE_REPLY_SIZE)
      return { cookie: P.decodeReplyHeader(head.slice())!.cookie, done: true };
    const full = new Uint8Array(P.STRUCTURED_HEADER_SIZE);
    full.set(head);
    full.set(await this.reader.read(4), P.SIMPLE_REPLY_SIZE);
    const h = P.decodeReplyHeader(full);
    if (h?.kind !== 'structured') throw new Error('bad reply');
    await this.reader.skip(h.length);
    return { cookie: h.cookie, done: (h.flags & P.REPLY_FLAG_DONE) !== 0 };
  }

  /** Resolves true once the server has closed the connection (no deadline: a busy machine is slow). */
  closed(): Promise<boolean> {
    if (this.socket.closed) return Promise.resolve(true);
    return new Promise((resolve) => this.socket.once('close', () => resolve(true)));
  }

  close(): void {
    this.socket.destroy();
  }
}
