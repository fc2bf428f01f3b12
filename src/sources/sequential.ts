/**
 * Sequential byte sources: a decompressor's output or stdin, read once from start to end.
 * One-pass consumers (convert to raw, checksum, pull) take the chunks directly; anything that
 * needs random access stages them to a temporary file first (stage.ts).
 */
import type { ByteSource } from '../image/types.js';

/** A one-pass stream of an image's bytes (raw content: the guest-visible bytes in order). */
export interface SequentialSource {
  /** For messages: where the bytes come from, e.g. "disk.raw.xz". */
  readonly name: string;
  /** Guest-visible format of the bytes; only raw content is handed out as a stream. */
  readonly format: 'raw';
  /** Total bytes when known in advance (else the consumer counts). */
  readonly size: number | undefined;
  /** Wrappers removed on the way, outermost first (e.g. ['tar', 'xz']). */
  readonly layers: readonly string[];
  /** The bytes came from an untrusted origin (network, archive, compressed wrapper). */
  readonly untrusted: boolean;
  /** The chunks, in order; can be iterated once. Chunks may be reused after the next one. */
  chunks(): AsyncIterable<Uint8Array>;
  /** Stops the producer (decompressor, child process, download) and releases everything. */
  close(): Promise<void>;
}

const READ_CHUNK = 1 << 20;

/**
 * The shared zero chunk: decoders that know a run decoded to zeroes yield views of it instead
 * of the bytes, and consumers may skip such chunks without looking (isZeroChunk). Never
 * written to; its pages are never touched, so they cost no memory.
 */
const ZEROES = new Uint8Array(new ArrayBuffer(4 * 1024 * 1024));

/** `length` zero bytes (at most 4 MiB) as a view of the shared zero chunk. */
export function zeroChunk(length: number): Uint8Array {
  return ZEROES.subarray(0, length);
}

/** Whether `chunk` is a view of the shared zero chunk (all zeroes, known without reading). */
export function isZeroChunk(chunk: Uint8Array): boolean {
  return chunk.buffer === ZEROES.buffer;
}

/** Reads a random-access source from start to end in large chunks. */
export async function* readSequential(
  source: ByteSource,
  chunk = READ_CHUNK,
): AsyncGenerator<Uint8Array> {
  for (let pos = 0; pos < source.size; ) {
    const buf = new Uint8Array(Math.min(chunk, source.size - pos));
    const n = await source.read(buf, pos);
    if (n === 0) return;
    pos += n;
    yield n === buf.length ? buf : buf.subarray(0, n);
  }
}

/**
 * An async iterator whose first bytes can be looked at before the whole stream is handed on
 * (to probe a decompressed stream for a format or a further wrapper).
 */
export class Peekable {
  private readonly held: Uint8Array[] = [];
  private heldBytes = 0;
  private ended = false;
  private taken = false;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Up to `n` first bytes (fewer only when the stream is shorter). */
  async peek(n: number): Promise<Uint8Array> {
    while (this.heldBytes < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length > 0) {
        // Copy: producers may reuse their buffers once the next chunk is asked for.
        this.held.push(Uint8Array.from(r.value));
        this.heldBytes += r.value.length;
      }
    }
    const out = new Uint8Array(Math.min(n, this.heldBytes));
    let at = 0;
    for (const c of this.held) {
      if (at >= out.length) break;
      const part = c.subarray(0, out.length - at);
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** The whole stream, peeked bytes included; can be taken once. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    if (this.taken) throw new Error('stream already consumed');
    this.taken = true;
    let finished = this.ended;
    try {
      while (this.held.length > 0) yield this.held.shift()!;
      if (this.ended) return;
      for (;;) {
        const r = await this.it.next();
        if (r.done) {
          finished = true;
          return;
        }
        if (r.value.length > 0) yield r.value;
      }
    } finally {
      // A consumer that stops early (an error, a limit) stops the producer too: decoders
      // and child processes further up the chain must not run on unread.
      if (!finished) await this.close();
    }
  }

  /** Ends the underlying iterator early (runs its finally blocks). */
  async close(): Promise<void> {
    this.ended = true;
    await this.it.return?.();
  }
}

/** Stdin as chunks (the IMAGE argument `-`). */
export async function* readStdin(): AsyncGenerator<Uint8Array> {
  for await (const chunk of process.stdin) yield chunk as Buffer;
}
