/**
 * Exact-length reads over a socket, for both NBD peers. Incoming chunks are queued and handed
 * out in the sizes the protocol asks for; the socket is paused while too much is buffered, so a
 * fast sender cannot make us hold more than about HIGH_WATER bytes.
 */
import type { Socket } from 'node:net';
import { NbdProtocolError } from '../errors.js';

const HIGH_WATER = 4 * 1024 * 1024;

export class ConnectionClosedError extends NbdProtocolError {
  constructor(message = 'connection closed') {
    super(message);
  }
}

export class WireReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended: Error | undefined;
  private wake: (() => void) | undefined;

  /**
   * @param feed 'data': the reader takes the socket's data events; 'push': the owner of the
   * socket (one created with `onread`) hands chunks to push().
   */
  constructor(
    private readonly socket: Socket,
    feed: 'data' | 'push' = 'data',
  ) {
    if (feed === 'data') socket.on('data', (chunk: Buffer) => this.push(chunk));
    socket.on('end', () => this.finish(new ConnectionClosedError()));
    socket.on('close', () => this.finish(new ConnectionClosedError()));
    socket.on('error', (err) =>
      this.finish(new ConnectionClosedError(`connection failed: ${err.message}`)),
    );
  }

  /** Queues bytes received (the reader keeps `chunk`: it must not be reused). */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered >= HIGH_WATER) this.socket.pause();
    this.notify();
  }

  /** Hands over every byte received and not consumed, for another parser to go on with. */
  drain(): Buffer[] {
    const chunks = this.chunks;
    this.chunks = [];
    this.buffered = 0;
    if (this.socket.isPaused()) this.socket.resume();
    return chunks;
  }

  /** Bytes received and not yet consumed. */
  get available(): number {
    return this.buffered;
  }

  private finish(err: Error): void {
    this.ended ??= err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async more(): Promise<void> {
    if (this.ended) throw this.ended;
    if (this.socket.isPaused()) this.socket.resume();
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }

  /** Copies up to `target.length` queued bytes into target; returns the count. */
  private take(target: Uint8Array): number {
    let done = 0;
    while (done < target.length && this.chunks.length > 0) {
      const head = this.chunks[0]!;
      const n = Math.min(head.length, target.length - done);
      target.set(head.subarray(0, n), done);
      done += n;
      if (n === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(n);
    }
    this.buffered -= done;
    if (this.buffered < HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
    return done;
  }

  /** Fills `target` completely, or rejects with ConnectionClosedError. */
  async readInto(target: Uint8Array): Promise<void> {
    let done = this.take(target);
    while (done < target.length) {
      await this.more();
      done += this.take(target.subarray(done));
    }
  }

  /** Reads exactly n bytes (headers and small payloads: the caller bounds n). */
  async read(n: number): Promise<Uint8Array> {
    const head = this.chunks[0];
    if (head && head.length >= n) {
      // Fast path: the bytes are in one chunk already.
      const out = head.subarray(0, n);
      if (n === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(n);
      this.buffered -= n;
      if (this.buffered < HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
      return out;
    }
    const out = new Uint8Array(n);
    await this.readInto(out);
    return out;
  }

  /** Discards n bytes without holding them. */
  async skip(n: number): Promise<void> {
    const scratch = new Uint8Array(Math.min(n, 64 * 1024));
    for (let left = n; left > 0; ) {
      const step = Math.min(left, scratch.length);
      await this.readInto(scratch.subarray(0, step));
      left -= step;
    }
  }
}

/**
 * Writes one message (several buffers) contiguously; resolves when the socket has taken the
 * bytes (the callback of the last write), so callers can account memory until then.
 */
export function writeMessage(socket: Socket, parts: Uint8Array[]): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed || !socket.writable) {
      reject(new ConnectionClosedError());
      return;
    }
    const done = (err?: Error | null) =>
      err ? reject(new ConnectionClosedError(`write failed: ${err.message}`)) : resolve();
    if (parts.length === 1) {
      socket.write(parts[0]!, done);
      return;
    }
    socket.cork();
    for (let i = 0; i < parts.length - 1; i++) socket.write(parts[i]!);
    socket.write(parts.at(-1) ?? new Uint8Array(0), done);
    socket.uncork();
  });
}
