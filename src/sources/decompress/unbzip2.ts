/**
 * bzip2 in pure JS: unbzip2-stream's block decoder, driven here one block at a time. The
 * package's own stream wrapper decodes every block its buffered input holds in one go (up to
 * 46 MiB of output per 900k block of zero runs), ignores pause, and collects each block in a
 * JS array (8 bytes per byte): its memory grew with the image. Here at most one block's output
 * is held ahead of the consumer, in typed pieces, and compressed input is read only as needed.
 * Several concatenated streams are read; bytes after the last one that cannot start a stream
 * are ignored, as bzip2 -dc and the libbz2 path do.
 */
import { createRequire } from 'node:module';
import { CorruptImageError } from '../../errors.js';

const require = createRequire(import.meta.url);

/** The package's bit reader: reads n bits (null: skip to the next byte boundary). */
type Bits = ((n: number | null) => number) & { bytesRead: number };
interface Bzip2Lib {
  /** Reads a stream header ("BZh" + level); returns the level (block size / 100k). */
  header(bits: Bits): number;
  /** Decodes one block into `sink`; returns the running stream CRC, or null at the end marker. */
  decompress(
    bits: Bits,
    sink: (byte: number) => void,
    work: Int32Array,
    size: number,
    crc: number,
  ): number | null;
}

/** Compressed bytes one block may take (the package's own margin): decode once this many are in. */
const blockInput = (level: number) => 25_000 + 100_000 * level;
/** Output is handed on in pieces of this size. */
const PIECE = 1 << 20;
/** A stream starts "BZh" and a block size digit 1-9. */
const STREAM_MAGIC = [0x42, 0x5a, 0x68] as const;

/** Whether the bytes received so far (up to 4) may start a stream. */
function startsStream(byte: (i: number) => number | undefined): boolean {
  for (let i = 0; i < 4; i++) {
    const b = byte(i);
    if (b === undefined) return true; // cut short: the header read fails as truncated
    if (i < 3 ? b !== STREAM_MAGIC[i] : b < 0x31 || b > 0x39) return false;
  }
  return true;
}

export async function* unbzip2(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const bz2 = require('unbzip2-stream/lib/bzip2.js') as Bzip2Lib;
  const bitIterator = require('unbzip2-stream/lib/bit_iterator.js') as (
    next: () => Uint8Array,
  ) => Bits;
  const source = input[Symbol.asyncIterator]();
  const queue: Uint8Array[] = [];
  let received = 0;
  let ended = false;
  let bits: Bits | undefined;
  const unread = () => received - (bits?.bytesRead ?? 0);
  // The buffer the bit reader works in, and the stream offset of its first byte.
  let current: Uint8Array | undefined;
  let currentStart = 0;
  const nextInput = () => {
    const next = queue.shift();
    if (!next) throw new CorruptImageError('input ended in the middle of a block');
    currentStart += current?.length ?? 0;
    current = next;
    return next;
  };
  /** The `i`th byte the bit reader has not started on (at a byte boundary), if received. */
  const unreadByte = (i: number): number | undefined => {
    let at = (bits?.bytesRead ?? 0) + i - currentStart;
    for (const buf of current ? [current, ...queue] : queue) {
      if (at < buf.length) return buf[at];
      at -= buf.length;
    }
    return undefined;
  };
  /** Reads input until `want` unread bytes are buffered or it ends. */
  const fill = async (want: number) => {
    while (!ended && unread() < want) {
      const r = await source.next();
      if (r.done) ended = true;
      else if (r.value.length > 0) {
        queue.push(r.value);
        received += r.value.length;
      }
    }
  };

  let pieces: Uint8Array[] = [];
  let piece = new Uint8Array(PIECE);
  let used = 0;
  const sink = (byte: number) => {
    piece[used++] = byte;
    if (used === PIECE) {
      pieces.push(piece);
      piece = new Uint8Array(PIECE);
      used = 0;
    }
  };

  let level = 0; // 0: a stream header comes next (several streams may be concatenated)
  let streams = 0;
  let crc = 0;
  let work = new Int32Array(0);
  try {
    for (;;) {
      if (level === 0) {
        await fill(4);
        if (unread() === 0) return;
        // After a stream, bytes that cannot start another are ignored, as bzip2 -dc (and
        // libbz2's BZ_DATA_ERROR_MAGIC) do; a stream header cut short is still an error.
        if (streams > 0 && !startsStream(unreadByte)) return;
        bits ??= bitIterator(nextInput);
        level = bz2.header(bits);
        if (work.length !== 100_000 * level) work = new Int32Array(100_000 * level);
        crc = 0;
        continue;
      }
      await fill(blockInput(level));
      if (unread() === 0)
        throw new CorruptImageError('input ended before the end-of-stream marker');
      const next = bz2.decompress(bits as Bits, sink, work, work.length, crc);
      if (next === null) {
        level = 0;
        streams++;
      } else crc = next;
      if (used > 0) {
        pieces.push(piece.subarray(0, used));
        piece = new Uint8Array(PIECE);
        used = 0;
      }
      const out = pieces;
      pieces = [];
      yield* out;
    }
  } finally {
    await source.return?.();
  }
}
