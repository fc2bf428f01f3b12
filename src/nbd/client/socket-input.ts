/**
 * Routes a client socket's reads (its `onread` buffer and callback). During the handshake, bytes
 * are read into a scratch buffer and queued, copied, on a WireReader; once the ReplyParser is
 * attached it decides where each read lands, and bytes the handshake left unread go to it first.
 */
import type { WireReader } from '../wire.js';
import type { ReplyParser } from './replies.js';

const HANDSHAKE_SCRATCH = 64 * 1024;

export class SocketInput {
  private readonly scratch = Buffer.allocUnsafe(HANDSHAKE_SCRATCH);
  private reader: WireReader | undefined;
  private parser: ReplyParser | undefined;
  private onError: (err: unknown) => void = () => {};

  /** Handshake phase: queue incoming bytes on `reader`. */
  handshake(reader: WireReader): void {
    this.reader = reader;
  }

  /** Transmission phase: `parser` takes every byte; a parse failure goes to `onError`. */
  attach(parser: ReplyParser, onError: (err: unknown) => void): void {
    this.onError = onError;
    const rest = this.reader?.drain() ?? [];
    this.reader = undefined;
    this.parser = parser;
    try {
      for (const chunk of rest) parser.feed(chunk);
    } catch (err) {
      this.parser = undefined;
      onError(err);
    }
  }

  nextBuffer(): Uint8Array {
    return this.parser?.nextBuffer() ?? this.scratch;
  }

  /** Returns false to stop reading (the connection has failed). */
  received(n: number, buf: Uint8Array): boolean {
    if (this.parser) {
      try {
        this.parser.received(n, buf);
        return true;
      } catch (err) {
        this.parser = undefined;
        this.onError(err);
        return false;
      }
    }
    // The scratch buffer is reused for the next read: the reader keeps a copy.
    this.reader?.push(Buffer.from(buf.subarray(0, n)));
    return true;
  }
}
