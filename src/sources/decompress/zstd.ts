/**
 * zstd without libzstd (which, when it loads, decodes in a worker: native-zstd.ts) and without
 * the zstd tool: @mongodb-js/zstd (native, fast) only decompresses whole
 * buffers, so the stream is split into frames here: a frame that declares a small content
 * size is decompressed by it in one call; any other frame (a plain `zstd FILE` makes one frame
 * for the whole file) goes through fzstd's streaming decoder, whose memory is the frame's
 * window, not its content.
 */
import { createRequire } from 'node:module';
import { Xxh64 } from '../../codec/xxhash64.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';

const require = createRequire(import.meta.url);

interface FzstdDecompress {
  push(chunk: Uint8Array, final?: boolean): void;
  /** Input held back until a block is complete, and its length (fzstd internals). */
  c?: Uint8Array[];
  l?: number;
}
interface Fzstd {
  Decompress: new (ondata: (data: Uint8Array, final?: boolean) => void) => FzstdDecompress;
}
interface NativeZstd {
  decompress(data: Buffer): Promise<Buffer>;
}

/** Frames up to this content size are decompressed whole by the native binding. */
const SMALL_FRAME = 32 * 1024 * 1024;
/** Largest window (decoder memory) accepted, like zstd's own default limit of 2^27 ×2. */
const MAX_WINDOW = 256 * 1024 * 1024;
const MAX_BLOCK = 128 * 1024;
const FRAME_MAGIC = 0xfd2fb528;

export async function* unzstd(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const q = new ByteQueue(input);
  try {
    yield* frames(q);
  } finally {
    await q.close();
  }
}

async function* frames(q: ByteQueue): AsyncGenerator<Uint8Array> {
  let frames = 0;
  for (;;) {
    if ((await q.fill(4)) < 4) {
      if (q.available > 0) throw new CorruptImageError('zstd data ends inside a frame header');
      if (frames === 0) throw new CorruptImageError('zstd data is empty');
      return;
    }
    const magic = q.u32(0);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      // A skippable frame (metadata): 4-byte magic, 4-byte size, then the bytes.
      if ((await q.fill(8)) < 8) throw new CorruptImageError('zstd data ends inside a frame');
      const size = q.u32(4);
      q.take(8);
      await q.skip(size);
      frames++;
      continue;
    }
    if (magic !== FRAME_MAGIC) throw new CorruptImageError('zstd data has a bad frame magic');
    const header = await readHeader(q);
    frames++;
    if (header.contentSize !== undefined && header.contentSize <= SMALL_FRAME) {
      yield await wholeFrame(q, header);
    } else {
      yield* streamedFrame(q, header);
    }
  }
}

interface FrameHeader {
  bytes: Uint8Array;
  contentSize: number | undefined;
  checksum: boolean;
}

async function readHeader(q: ByteQueue): Promise<FrameHeader> {
  if ((await q.fill(5)) < 5) throw new CorruptImageError('zstd data ends inside a frame header');
  const fhd = q.at(4);
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const dictFlag = fhd & 3;
  if (fhd & 0x08) throw new CorruptImageError('zstd frame header has a reserved bit set');
  if (dictFlag !== 0) throw new UnsupportedFeatureError('zstd frames that need a dictionary');
  const fcsBytes = [single, 2, 4, 8][fcsFlag]!;
  const length = 5 + (single ? 0 : 1) + fcsBytes;
  if ((await q.fill(length)) < length)
    throw new CorruptImageError('zstd data ends inside a frame header');
  let contentSize: number | undefined;
  if (fcsBytes > 0) {
    let v = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) v = v * 256 + q.at(length - fcsBytes + i);
    contentSize = fcsBytes === 2 ? v + 256 : v;
  }
  let window = contentSize ?? 0;
  if (!single) {
    const wd = q.at(5);
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  if (window > MAX_WINDOW) {
    throw new UnsupportedFeatureError(
      `zstd frame needs a ${Math.ceil(window / 2 ** 20)} MiB window (diskpipe allows ${MAX_WINDOW / 2 ** 20} MiB without the zstd tool)`,
    );
  }
  return { bytes: q.take(length), contentSize, checksum: ((fhd >> 2) & 1) === 1 };
}

/** The frame's raw blocks (and checksum), one by one, through the end of the frame. */
async function* blocks(q: ByteQueue, header: FrameHeader): AsyncGenerator<Uint8Array> {
  for (;;) {
    if ((await q.fill(3)) < 3) throw new CorruptImageError('zstd data is truncated');
    const h = q.at(0) | (q.at(1) << 8) | (q.at(2) << 16);
    const last = h & 1;
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw new CorruptImageError('zstd data has a reserved block type');
    if (size > MAX_BLOCK) throw new CorruptImageError('zstd block is larger than 128 KiB');
    const length = 3 + (type === 1 ? 1 : size);
    if ((await q.fill(length)) < length) throw new CorruptImageError('zstd data is truncated');
    yield q.take(length);
    if (last) break;
  }
  if (header.checksum) {
    if ((await q.fill(4)) < 4) throw new CorruptImageError('zstd data is truncated');
    yield q.take(4);
  }
}

async function wholeFrame(q: ByteQueue, header: FrameHeader): Promise<Uint8Array> {
  const parts: Uint8Array[] = [header.bytes];
  let bytes = header.bytes.length;
  for await (const b of blocks(q, header)) {
    bytes += b.length;
    // Compressed blocks are never much larger than their output; a frame that is must be bad.
    if (bytes > SMALL_FRAME * 2 + (1 << 20)) throw new CorruptImageError('zstd frame is corrupt');
    parts.push(b);
  }
  const native = require('@mongodb-js/zstd') as NativeZstd;
  let out: Buffer;
  try {
    out = await native.decompress(Buffer.concat(parts, bytes));
  } catch (err) {
    throw new CorruptImageError(`zstd data is corrupt: ${(err as Error).message}`, { cause: err });
  }
  if (out.length !== header.contentSize)
    throw new CorruptImageError('zstd frame content size does not match its header');
  return out;
}

async function* streamedFrame(q: ByteQueue, header: FrameHeader): AsyncGenerator<Uint8Array> {
  const { Decompress } = require('fzstd') as Fzstd;
  let out: Uint8Array[] = [];
  const dec = new Decompress((data) => {
    if (data.length > 0) out.push(data);
  });
  const push = (bytes: Uint8Array, final = false): Uint8Array[] => {
    try {
      dec.push(bytes, final);
      // fzstd 0.1.1 keeps an empty view of each chunk that ends exactly at a block boundary
      // (every chunk here) and, holding no bytes, never clears that list: every input
      // buffer stayed alive. Nothing is held back when l is 0.
      if (dec.l === 0 && dec.c && dec.c.length > 0) dec.c = [];
    } catch (err) {
      throw new CorruptImageError(`zstd data is corrupt: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const ready = out;
    out = [];
    return ready;
  };
  let produced = 0;
  // fzstd does not verify the frame checksum (low 32 bits of XXH64): hash the output here.
  const hash = header.checksum ? new Xxh64() : undefined;
  let lastBlock: Uint8Array | undefined;
  push(header.bytes);
  for await (const b of blocks(q, header)) {
    lastBlock = b;
    for (const c of push(b)) {
      produced += c.length;
      hash?.update(c);
      yield c;
    }
  }
  for (const c of push(new Uint8Array(0), true)) {
    produced += c.length;
    hash?.update(c);
    yield c;
  }
  if (header.contentSize !== undefined && produced !== header.contentSize)
    throw new CorruptImageError('zstd frame content size does not match its header');
  if (hash && lastBlock) {
    // blocks() yields the 4 checksum bytes last.
    const stored = new DataView(lastBlock.buffer, lastBlock.byteOffset, 4).getUint32(0, true);
    if (Number(hash.digest() & 0xffffffffn) !== stored) {
      throw new CorruptImageError('zstd frame checksum does not match its content');
    }
  }
}

/** Bytes pulled from an async iterable on demand, with small look-ahead and skipping. */
class ByteQueue {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunks: Uint8Array[] = [];
  private first = 0;
  available = 0;
  private ended = false;

  constructor(input: AsyncIterable<Uint8Array>) {
    this.it = input[Symbol.asyncIterator]();
  }

  /** Stops the input early (runs its finally blocks); harmless once it has ended. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.it.return?.();
  }

  /** Pulls until `n` bytes are available or the input ends; returns what is available. */
  async fill(n: number): Promise<number> {
    while (this.available < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length > 0) {
        this.chunks.push(r.value);
        this.available += r.value.length;
      }
    }
    return this.available;
  }

  at(i: number): number {
    let off = this.first + i;
    for (const c of this.chunks) {
      if (off < c.length) return c[off]!;
      off -= c.length;
    }
    throw new RangeError('ByteQueue.at past the data');
  }

  u32(i: number): number {
    return (this.at(i) | (this.at(i + 1) << 8) | (this.at(i + 2) << 16)) + this.at(i + 3) * 2 ** 24;
  }

  /** Removes and returns the next `n` available bytes. */
  take(n: number): Uint8Array {
    const head = this.chunks[0]!;
    if (this.first + n <= head.length) {
      const out = head.subarray(this.first, this.first + n);
      this.advance(n);
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0]!;
      const part = c.subarray(this.first, Math.min(c.length, this.first + n - at));
      out.set(part, at);
      at += part.length;
      this.advance(part.length);
    }
    return out;
  }

  /** Drops `n` bytes, pulling (and discarding) input as needed. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      if ((await this.fill(1)) === 0) throw new CorruptImageError('zstd data is truncated');
      const step = Math.min(n, this.chunks[0]!.length - this.first);
      this.advance(step);
      n -= step;
    }
  }

  private advance(n: number): void {
    this.first += n;
    this.available -= n;
    while (this.chunks.length > 0 && this.first >= this.chunks[0]!.length) {
      this.first -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}
