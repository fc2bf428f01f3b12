/**
 * The reply to a READ, built from the image's extents: zero extents are never read (an
 * OFFSET_HOLE chunk, or zeroes filled in for simple replies and DF), data is read into pooled
 * buffers. Each data buffer keeps room in front for its chunk header, so a chunk goes to the
 * socket as one piece (one write, no gathering) and a one-extent reply is a single buffer.
 */
import type { Extent, Image } from '../../image/types.js';
import type { BufferPool } from '../buffer-pool.js';
import {
  encodeChunkHeader,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeSimpleReply,
  REPLY_FLAG_DONE,
  REPLY_TYPE_NONE,
  STRUCTURED_HEADER_SIZE,
} from '../protocol.js';

/** OFFSET_DATA chunk header: the structured header and the 8-byte offset. */
const DATA_HEADER_SIZE = STRUCTURED_HEADER_SIZE + 8;

export interface ReadReply {
  /** What to send, in order. */
  parts: Uint8Array[];
  /** Pool buffers to give back once the socket has taken `parts`. */
  buffers: Uint8Array[];
}

export interface ReadRequest {
  cookie: bigint;
  offset: number;
  length: number;
  /** Structured replies were negotiated. */
  structured: boolean;
  /** The client asked for one contiguous chunk (NBD_CMD_FLAG_DF). */
  df: boolean;
}

/** `known`: the range's extents when already known (else the image is asked). */
export async function readReply(
  image: Image,
  pool: BufferPool,
  req: ReadRequest,
  known?: readonly Extent[],
): Promise<ReadReply> {
  const { cookie, offset, length, structured } = req;
  if (length === 0) {
    const part = structured
      ? encodeChunkHeader(cookie, REPLY_TYPE_NONE, REPLY_FLAG_DONE, 0)
      : encodeSimpleReply(cookie, 0);
    return { parts: [part], buffers: [] };
  }
  const buffers: Uint8Array[] = [];
  try {
    if (!structured || req.df) {
      // One piece: zero extents are filled in, never read.
      const header = structured
        ? encodeOffsetDataHeader(cookie, REPLY_FLAG_DONE, offset, length)
        : encodeSimpleReply(cookie, 0);
      const buf = pool.take(header.length + length);
      buffers.push(buf);
      buf.set(header);
      const data = buf.subarray(header.length);
      for await (const e of known ?? image.extents(offset, length)) {
        const part = data.subarray(e.offset - offset, e.offset - offset + e.length);
        if (e.zero) part.fill(0);
        else await image.read(part, e.offset);
      }
      return { parts: [buf], buffers };
    }
    // Structured: zero extents become OFFSET_HOLE chunks and are never read.
    const parts: Uint8Array[] = [];
    for await (const e of known ?? image.extents(offset, length)) {
      if (e.zero) {
        parts.push(encodeOffsetHole(cookie, 0, e.offset, e.length));
      } else {
        parts.push(await dataChunk(image, pool, cookie, e, buffers));
      }
    }
    // Mark the last chunk final: flags are bytes 4-5 of its header.
    const last = parts.at(-1)!;
    new DataView(last.buffer, last.byteOffset).setUint16(4, REPLY_FLAG_DONE);
    return { parts, buffers };
  } catch (err) {
    for (const b of buffers) pool.give(b);
    throw err;
  }
}

/** An OFFSET_DATA chunk (header and data in one buffer) for a data extent. */
async function dataChunk(
  image: Image,
  pool: BufferPool,
  cookie: bigint,
  e: Extent,
  buffers: Uint8Array[],
): Promise<Uint8Array> {
  const buf = pool.take(DATA_HEADER_SIZE + e.length);
  buffers.push(buf);
  await image.read(buf.subarray(DATA_HEADER_SIZE), e.offset);
  buf.set(encodeOffsetDataHeader(cookie, 0, e.offset, e.length));
  return buf;
}
