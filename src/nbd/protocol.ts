/**
 * NBD protocol constants and codecs shared by the server and the client (fixed newstyle
 * handshake, simple and structured replies, base:allocation). Values are from the NBD protocol
 * document (NetworkBlockDevice/nbd doc/proto.md). Everything on the wire is big-endian.
 *
 * Decoders take untrusted bytes: they check lengths and return `undefined` (or throw
 * NbdProtocolError) for anything malformed, never read past the buffer.
 */

import { NbdProtocolError } from '../errors.js';
import { view } from '../io/bytes.js';

export const NBD_DEFAULT_PORT = 10809;

// Magic numbers.
export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const TF_HAS_FLAGS = 1 << 0;
export const TF_READ_ONLY = 1 << 1;
export const TF_SEND_FLUSH = 1 << 2;
export const TF_SEND_FUA = 1 << 3;
export const TF_ROTATIONAL = 1 << 4;
export const TF_SEND_TRIM = 1 << 5;
export const TF_SEND_WRITE_ZEROES = 1 << 6;
export const TF_SEND_DF = 1 << 7;
export const TF_CAN_MULTI_CONN = 1 << 8;
export const TF_SEND_CACHE = 1 << 10;
export const TF_SEND_FAST_ZERO = 1 << 11;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;

// Option reply types; errors have bit 31 set.
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const REP_ERR_UNSUP = 0x80000001;
export const REP_ERR_POLICY = 0x80000002;
export const REP_ERR_INVALID = 0x80000003;
export const REP_ERR_PLATFORM = 0x80000004;
export const REP_ERR_TLS_REQD = 0x80000005;
export const REP_ERR_UNKNOWN = 0x80000006;
export const REP_ERR_SHUTDOWN = 0x80000007;
export const REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const REP_ERR_TOO_BIG = 0x80000009;

export function isOptionError(type: number): boolean {
  return type >= 0x80000000;
}

// NBD_OPT_INFO / NBD_OPT_GO information types.
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// Commands and command flags.
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured replies.
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = 0x8001;
export const REPLY_TYPE_ERROR_OFFSET = 0x8002;

export function isErrorChunk(type: number): boolean {
  return (type & 0x8000) !== 0;
}

// Error values.
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

const ERROR_NAMES: Record<number, string> = {
  [NBD_EPERM]: 'EPERM (operation not permitted)',
  [NBD_EIO]: 'EIO (input/output error)',
  [NBD_ENOMEM]: 'ENOMEM (cannot allocate memory)',
  [NBD_EINVAL]: 'EINVAL (invalid argument)',
  [NBD_ENOSPC]: 'ENOSPC (no space left on device)',
  [NBD_EOVERFLOW]: 'EOVERFLOW (value too large)',
  [NBD_ENOTSUP]: 'ENOTSUP (operation not supported)',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN (server is shutting down)',
};

export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `error ${code}`;
}

// base:allocation.
export const META_BASE_ALLOCATION = 'base:allocation';
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

/** The protocol's size defaults: requests up to 32 MiB are never a denial of service. */
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
/** Strings (export names, messages) must not exceed this. */
export const MAX_STRING = 4096;

// Fixed sizes.
export const REQUEST_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;
export const OPTION_HEADER_SIZE = 16;
export const OPTION_REPLY_HEADER_SIZE = 20;

/**
 * Reads a 64-bit unsigned value as a number: exact up to 2^53, and never smaller than the true
 * value above it (so a range check against an image size still rejects it).
 */
export function readU64(buf: Uint8Array, at: number): number {
  const v = view(buf);
  return v.getUint32(at) * 2 ** 32 + v.getUint32(at + 4);
}

export function writeU64(buf: Uint8Array, at: number, value: number): void {
  const v = view(buf);
  v.setUint32(at, Math.floor(value / 2 ** 32));
  v.setUint32(at + 4, value >>> 0);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Decodes a protocol string; undefined when it is not valid UTF-8, holds NUL or is too long. */
export function decodeString(bytes: Uint8Array): string | undefined {
  if (bytes.length > MAX_STRING) return undefined;
  try {
    const s = utf8.decode(bytes);
    return s.includes('\0') ? undefined : s;
  } catch {
    return undefined;
  }
}

export function encodeString(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

// ---- Handshake ---------------------------------------------------------------------------

/** The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags (18 bytes). */
export function encodeGreeting(handshakeFlags: number): Uint8Array {
  const b = new Uint8Array(18);
  const v = view(b);
  v.setBigUint64(0, NBDMAGIC);
  v.setBigUint64(8, IHAVEOPT);
  v.setUint16(16, handshakeFlags);
  return b;
}

/** Handshake flags from a greeting, or undefined when it is not a fixed-newstyle server. */
export function decodeGreeting(b: Uint8Array): number | undefined {
  if (b.length !== 18) return undefined;
  const v = view(b);
  if (v.getBigUint64(0) !== NBDMAGIC) return undefined;
  if (v.getBigUint64(8) !== IHAVEOPT) return undefined;
  return v.getUint16(16);
}

export interface ClientFlags {
  flags: number;
  /** Only flags this side knows are set. */
  known: boolean;
  /** Zeroes after the export-name reply are left out. */
  noZeroes: boolean;
}

/**
 * The client's flags (4 bytes) in answer to the server's handshake flags: fixed newstyle and
 * no zeroes, each only when the server offers it.
 */
export function encodeClientFlags(handshakeFlags: number): Uint8Array {
  const noZeroes = (handshakeFlags & FLAG_NO_ZEROES) !== 0;
  const flags =
    (handshakeFlags & FLAG_FIXED_NEWSTYLE ? FLAG_C_FIXED_NEWSTYLE : 0) |
    (noZeroes ? FLAG_C_NO_ZEROES : 0);
  const b = new Uint8Array(4);
  view(b).setUint32(0, flags);
  return b;
}

/** The client's flags (4 bytes). */
export function decodeClientFlags(b: Uint8Array): ClientFlags {
  const flags = view(b).getUint32(0);
  const known = (flags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) === 0;
  return { flags, known, noZeroes: (flags & FLAG_C_NO_ZEROES) !== 0 };
}

export interface OptionHeader {
  option: number;
  length: number;
}

export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(OPTION_HEADER_SIZE + data.length);
  const v = view(b);
  v.setBigUint64(0, IHAVEOPT);
  v.setUint32(8, option);
  v.setUint32(12, data.length);
  b.set(data, OPTION_HEADER_SIZE);
  return b;
}

/** An option header, or undefined when the magic is wrong. */
export function decodeOptionHeader(b: Uint8Array): OptionHeader | undefined {
  const v = view(b);
  if (v.getBigUint64(0) !== IHAVEOPT) return undefined;
  return { option: v.getUint32(8), length: v.getUint32(12) };
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export function encodeOptionReply(
  option: number,
  type: number,
  data: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const b = new Uint8Array(OPTION_REPLY_HEADER_SIZE + data.length);
  const v = view(b);
  v.setBigUint64(0, OPTION_REPLY_MAGIC);
  v.setUint32(8, option);
  v.setUint32(12, type);
  v.setUint32(16, data.length);
  b.set(data, OPTION_REPLY_HEADER_SIZE);
  return b;
}

export function decodeOptionReplyHeader(b: Uint8Array): OptionReplyHeader | undefined {
  const v = view(b);
  if (v.getBigUint64(0) !== OPTION_REPLY_MAGIC) return undefined;
  return { option: v.getUint32(8), type: v.getUint32(12), length: v.getUint32(16) };
}

/** Data of NBD_OPT_INFO / NBD_OPT_GO: an export name and the information requested. */
export interface InfoRequest {
  name: string;
  requests: number[];
}

export function encodeInfoRequest(r: InfoRequest): Uint8Array {
  const name = encodeString(r.name);
  const b = new Uint8Array(4 + name.length + 2 + 2 * r.requests.length);
  const v = view(b);
  v.setUint32(0, name.length);
  b.set(name, 4);
  v.setUint16(4 + name.length, r.requests.length);
  for (const [i, req] of r.requests.entries()) v.setUint16(6 + name.length + 2 * i, req);
  return b;
}

export function decodeInfoRequest(b: Uint8Array): InfoRequest | undefined {
  if (b.length < 6) return undefined;
  const v = view(b);
  const nameLength = v.getUint32(0);
  if (nameLength > b.length - 6) return undefined;
  const name = decodeString(b.subarray(4, 4 + nameLength));
  if (name === undefined) return undefined;
  const count = v.getUint16(4 + nameLength);
  if (b.length !== 6 + nameLength + 2 * count) return undefined;
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(v.getUint16(6 + nameLength + 2 * i));
  return { name, requests };
}

/** Data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export interface MetaContextRequest {
  name: string;
  queries: string[];
}

export function encodeMetaContextRequest(r: MetaContextRequest): Uint8Array {
  const name = encodeString(r.name);
  const queries = r.queries.map(encodeString);
  const b = new Uint8Array(8 + name.length + queries.reduce((n, q) => n + 4 + q.length, 0));
  const v = view(b);
  v.setUint32(0, name.length);
  b.set(name, 4);
  let at = 4 + name.length;
  v.setUint32(at, queries.length);
  at += 4;
  for (const q of queries) {
    v.setUint32(at, q.length);
    b.set(q, at + 4);
    at += 4 + q.length;
  }
  return b;
}

export function decodeMetaContextRequest(b: Uint8Array): MetaContextRequest | undefined {
  const v = view(b);
  if (b.length < 8) return undefined;
  const nameLength = v.getUint32(0);
  if (nameLength > b.length - 8) return undefined;
  const name = decodeString(b.subarray(4, 4 + nameLength));
  if (name === undefined) return undefined;
  let at = 4 + nameLength;
  const count = v.getUint32(at);
  at += 4;
  // Each query takes at least 4 bytes: a count beyond that is a lie, caught before looping.
  if (count > (b.length - at) / 4) return undefined;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > b.length) return undefined;
    const len = v.getUint32(at);
    if (len > b.length - at - 4) return undefined;
    const q = decodeString(b.subarray(at + 4, at + 4 + len));
    if (q === undefined) return undefined;
    queries.push(q);
    at += 4 + len;
  }
  return at === b.length ? { name, queries } : undefined;
}

/** NBD_REP_INFO payloads. */
export type Info =
  | { type: typeof INFO_EXPORT; size: number; flags: number }
  | { type: typeof INFO_NAME; name: string }
  | { type: typeof INFO_DESCRIPTION; description: string }
  | { type: typeof INFO_BLOCK_SIZE; minimum: number; preferred: number; maximum: number }
  | { type: 'unknown'; code: number };

export function encodeInfo(info: Info): Uint8Array {
  switch (info.type) {
    case INFO_EXPORT: {
      const b = new Uint8Array(12);
      view(b).setUint16(0, INFO_EXPORT);
      writeU64(b, 2, info.size);
      view(b).setUint16(10, info.flags);
      return b;
    }
    case INFO_NAME:
    case INFO_DESCRIPTION: {
      const s = encodeString(info.type === INFO_NAME ? info.name : info.description);
      const b = new Uint8Array(2 + s.length);
      view(b).setUint16(0, info.type);
      b.set(s, 2);
      return b;
    }
    case INFO_BLOCK_SIZE: {
      const b = new Uint8Array(14);
      const v = view(b);
      v.setUint16(0, INFO_BLOCK_SIZE);
      v.setUint32(2, info.minimum);
      v.setUint32(6, info.preferred);
      v.setUint32(10, info.maximum);
      return b;
    }
    default:
      throw new NbdProtocolError(`cannot encode information type ${info.code}`);
  }
}

/** Decodes an NBD_REP_INFO payload; undefined when a known type has the wrong length. */
export function decodeInfo(b: Uint8Array): Info | undefined {
  if (b.length < 2) return undefined;
  const v = view(b);
  const type = v.getUint16(0);
  switch (type) {
    case INFO_EXPORT:
      if (b.length !== 12) return undefined;
      return { type, size: readU64(b, 2), flags: v.getUint16(10) };
    case INFO_NAME:
    case INFO_DESCRIPTION: {
      const s = decodeString(b.subarray(2));
      if (s === undefined) return undefined;
      return type === INFO_NAME ? { type, name: s } : { type, description: s };
    }
    case INFO_BLOCK_SIZE:
      if (b.length !== 14) return undefined;
      return { type, minimum: v.getUint32(2), preferred: v.getUint32(6), maximum: v.getUint32(10) };
    default:
      return { type: 'unknown', code: type };
  }
}

/** The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zeroes unless waived. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Uint8Array {
  const b = new Uint8Array(noZeroes ? 10 : 134);
  writeU64(b, 0, size);
  view(b).setUint16(8, flags);
  return b;
}

/** NBD_REP_SERVER payload (NBD_OPT_LIST). */
export function encodeServerReply(name: string): Uint8Array {
  const s = encodeString(name);
  const b = new Uint8Array(4 + s.length);
  view(b).setUint32(0, s.length);
  b.set(s, 4);
  return b;
}

export function decodeServerReply(
  b: Uint8Array,
): { name: string; description: string } | undefined {
  if (b.length < 4) return undefined;
  const len = view(b).getUint32(0);
  if (len > b.length - 4) return undefined;
  const name = decodeString(b.subarray(4, 4 + len));
  const description = decodeString(b.subarray(4 + len));
  if (name === undefined || description === undefined) return undefined;
  return { name, description };
}

/** NBD_REP_META_CONTEXT payload. */
export function encodeMetaContextReply(id: number, name: string): Uint8Array {
  const s = encodeString(name);
  const b = new Uint8Array(4 + s.length);
  view(b).setUint32(0, id);
  b.set(s, 4);
  return b;
}

export function decodeMetaContextReply(b: Uint8Array): { id: number; name: string } | undefined {
  if (b.length < 4) return undefined;
  const name = decodeString(b.subarray(4));
  return name === undefined ? undefined : { id: view(b).getUint32(0), name };
}

// ---- Transmission ------------------------------------------------------------------------

export interface Request {
  flags: number;
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
}

export function encodeRequest(r: Request): Uint8Array {
  const b = new Uint8Array(REQUEST_SIZE);
  const v = view(b);
  v.setUint32(0, REQUEST_MAGIC);
  v.setUint16(4, r.flags);
  v.setUint16(6, r.type);
  v.setBigUint64(8, r.cookie);
  writeU64(b, 16, r.offset);
  v.setUint32(24, r.length);
  return b;
}

/** A request header, or undefined when the magic is wrong (the stream cannot be trusted). */
export function decodeRequest(b: Uint8Array): Request | undefined {
  const v = view(b);
  if (v.getUint32(0) !== REQUEST_MAGIC) return undefined;
  return {
    flags: v.getUint16(4),
    type: v.getUint16(6),
    cookie: v.getBigUint64(8),
    offset: readU64(b, 16),
    length: v.getUint32(24),
  };
}

export function encodeSimpleReply(cookie: bigint, error: number): Uint8Array {
  const b = new Uint8Array(SIMPLE_REPLY_SIZE);
  const v = view(b);
  v.setUint32(0, SIMPLE_REPLY_MAGIC);
  v.setUint32(4, error);
  v.setBigUint64(8, cookie);
  return b;
}

/** The header of a structured reply chunk; the payload follows it. */
export function encodeChunkHeader(
  cookie: bigint,
  type: number,
  flags: number,
  length: number,
): Uint8Array {
  const b = new Uint8Array(STRUCTURED_HEADER_SIZE);
  const v = view(b);
  v.setUint32(0, STRUCTURED_REPLY_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setBigUint64(8, cookie);
  v.setUint32(16, length);
  return b;
}

/** A reply header from the server: simple (16 bytes) or structured (20 bytes). */
export type ReplyHeader =
  | { kind: 'simple'; error: number; cookie: bigint }
  | { kind: 'structured'; flags: number; type: number; cookie: bigint; length: number };

/** Reads the magic of a reply: how many header bytes it has in all, or undefined. */
export function replyHeaderSize(first4: Uint8Array): number | undefined {
  const magic = view(first4).getUint32(0);
  if (magic === SIMPLE_REPLY_MAGIC) return SIMPLE_REPLY_SIZE;
  if (magic === STRUCTURED_REPLY_MAGIC) return STRUCTURED_HEADER_SIZE;
  return undefined;
}

export function decodeReplyHeader(b: Uint8Array): ReplyHeader | undefined {
  const v = view(b);
  const magic = v.getUint32(0);
  if (magic === SIMPLE_REPLY_MAGIC && b.length === SIMPLE_REPLY_SIZE) {
    return { kind: 'simple', error: v.getUint32(4), cookie: v.getBigUint64(8) };
  }
  if (magic === STRUCTURED_REPLY_MAGIC && b.length === STRUCTURED_HEADER_SIZE) {
    return {
      kind: 'structured',
      flags: v.getUint16(4),
      type: v.getUint16(6),
      cookie: v.getBigUint64(8),
      length: v.getUint32(16),
    };
  }
  return undefined;
}

/** OFFSET_DATA chunk header + the 8-byte offset (the data follows). */
export function encodeOffsetDataHeader(
  cookie: bigint,
  flags: number,
  offset: number,
  dataLength: number,
): Uint8Array {
  const b = new Uint8Array(STRUCTURED_HEADER_SIZE + 8);
  b.set(encodeChunkHeader(cookie, REPLY_TYPE_OFFSET_DATA, flags, 8 + dataLength));
  writeU64(b, STRUCTURED_HEADER_SIZE, offset);
  return b;
}

export function encodeOffsetHole(
  cookie: bigint,
  flags: number,
  offset: number,
  length: number,
): Uint8Array {
  const b = new Uint8Array(STRUCTURED_HEADER_SIZE + 12);
  b.set(encodeChunkHeader(cookie, REPLY_TYPE_OFFSET_HOLE, flags, 12));
  writeU64(b, STRUCTURED_HEADER_SIZE, offset);
  view(b).setUint32(STRUCTURED_HEADER_SIZE + 8, length);
  return b;
}

export function decodeOffsetHole(b: Uint8Array): { offset: number; length: number } | undefined {
  if (b.length !== 12) return undefined;
  return { offset: readU64(b, 0), length: view(b).getUint32(8) };
}

export interface BlockDescriptor {
  length: number;
  flags: number;
}

export function encodeBlockStatus(
  cookie: bigint,
  flags: number,
  contextId: number,
  descriptors: BlockDescriptor[],
): Uint8Array {
  const payload = 4 + 8 * descriptors.length;
  const b = new Uint8Array(STRUCTURED_HEADER_SIZE + payload);
  b.set(encodeChunkHeader(cookie, REPLY_TYPE_BLOCK_STATUS, flags, payload));
  const v = view(b);
  v.setUint32(STRUCTURED_HEADER_SIZE, contextId);
  descriptors.forEach((d, i) => {
    v.setUint32(STRUCTURED_HEADER_SIZE + 4 + 8 * i, d.length);
    v.setUint32(STRUCTURED_HEADER_SIZE + 8 + 8 * i, d.flags);
  });
  return b;
}

export function decodeBlockStatus(
  b: Uint8Array,
): { contextId: number; descriptors: BlockDescriptor[] } | undefined {
  if (b.length < 12 || (b.length - 4) % 8 !== 0) return undefined;
  const v = view(b);
  const descriptors: BlockDescriptor[] = [];
  for (let at = 4; at < b.length; at += 8) {
    const length = v.getUint32(at);
    if (length === 0) return undefined;
    descriptors.push({ length, flags: v.getUint32(at + 4) });
  }
  return { contextId: v.getUint32(0), descriptors };
}

/** An ERROR chunk (type NBD_REPLY_TYPE_ERROR) with a message for humans. */
export function encodeErrorChunk(
  cookie: bigint,
  flags: number,
  error: number,
  message: string,
): Uint8Array {
  const m = encodeString(message).subarray(0, MAX_STRING);
  const b = new Uint8Array(STRUCTURED_HEADER_SIZE + 6 + m.length);
  b.set(encodeChunkHeader(cookie, REPLY_TYPE_ERROR, flags, 6 + m.length));
  const v = view(b);
  v.setUint32(STRUCTURED_HEADER_SIZE, error);
  v.setUint16(STRUCTURED_HEADER_SIZE + 4, m.length);
  b.set(m, STRUCTURED_HEADER_SIZE + 6);
  return b;
}

/** Any error chunk: the error, its message, and (ERROR_OFFSET) the offset. */
export function decodeErrorChunk(
  type: number,
  b: Uint8Array,
): { error: number; message: string; offset?: number } | undefined {
  if (b.length < 6) return undefined;
  const v = view(b);
  const error = v.getUint32(0);
  const len = v.getUint16(4);
  if (len > b.length - 6) return undefined;
  const message = decodeString(b.subarray(6, 6 + len)) ?? '(unreadable message)';
  if (type === REPLY_TYPE_ERROR_OFFSET) {
    if (b.length !== 6 + len + 8) return undefined;
    return { error, message, offset: readU64(b, 6 + len) };
  }
  return { error, message };
}
