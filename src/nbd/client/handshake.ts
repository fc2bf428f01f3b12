/**
 * Client side of the fixed newstyle handshake: structured replies and base:allocation when the
 * server has them, then NBD_OPT_GO (NBD_OPT_EXPORT_NAME for servers without it). Everything
 * the server sends is checked: wrong magic, a reply to another option, or an oversize payload
 * ends the connection with an NbdProtocolError.
 */

import type { Socket } from 'node:net';
import { type DiskpipeError, NbdProtocolError, NotFoundError } from '../../errors.js';
import { isPowerOfTwo } from '../../io/bytes.js';
import {
  decodeGreeting,
  decodeInfo,
  decodeMetaContextReply,
  decodeOptionReplyHeader,
  decodeString,
  encodeClientFlags,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  encodeString,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  isOptionError,
  META_BASE_ALLOCATION,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  OPTION_REPLY_HEADER_SIZE,
  REP_ACK,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_META_CONTEXT,
  readU64,
} from '../protocol.js';
import { ConnectionClosedError, type WireReader, writeMessage } from '../wire.js';

/** Option replies are short; anything larger is a broken or hostile server. */
const MAX_OPTION_REPLY = 1 << 20;

export interface ExportInfo {
  size: number;
  flags: number;
  structured: boolean;
  /** The id the server gave base:allocation, when it offers it. */
  allocationContext: number | undefined;
  minBlock: number;
  preferredBlock: number;
  maxPayload: number;
}

interface OptionReply {
  type: number;
  data: Uint8Array;
}

export async function clientHandshake(
  socket: Socket,
  reader: WireReader,
  exportName: string,
  who: string,
): Promise<ExportInfo> {
  const handshakeFlags = decodeGreeting(await reader.read(18));
  if (handshakeFlags === undefined) {
    throw new NbdProtocolError(`${who}: not a newstyle NBD server (bad greeting)`);
  }
  const noZeroes = (handshakeFlags & FLAG_NO_ZEROES) !== 0;
  await writeMessage(socket, [encodeClientFlags(handshakeFlags)]);

  if (!(handshakeFlags & FLAG_FIXED_NEWSTYLE)) {
    return exportNameFallback(socket, reader, exportName, noZeroes, who);
  }

  const ask = async (option: number, data?: Uint8Array): Promise<void> =>
    writeMessage(socket, [encodeOption(option, data)]);
  const next = (option: number): Promise<OptionReply> => readOptionReply(reader, option, who);

  await ask(OPT_STRUCTURED_REPLY);
  const structured = (await next(OPT_STRUCTURED_REPLY)).type === REP_ACK;

  let allocationContext: number | undefined;
  if (structured) {
    const request = { name: exportName, queries: [META_BASE_ALLOCATION] };
    await ask(OPT_SET_META_CONTEXT, encodeMetaContextRequest(request));
    for (;;) {
      const r = await next(OPT_SET_META_CONTEXT);
      if (r.type === REP_META_CONTEXT) {
        const ctx = decodeMetaContextReply(r.data);
        if (!ctx) throw new NbdProtocolError(`${who}: malformed meta context reply`);
        if (ctx.name === META_BASE_ALLOCATION) allocationContext = ctx.id;
        continue;
      }
      // An error means no context: extents are then reported as data.
      if (r.type !== REP_ACK) allocationContext = undefined;
      break;
    }
  }

  await ask(OPT_GO, encodeInfoRequest({ name: exportName, requests: [INFO_BLOCK_SIZE] }));
  const info: Partial<ExportInfo> = { structured, allocationContext };
  for (;;) {
    const r = await next(OPT_GO);
    if (r.type === REP_INFO) {
      const item = decodeInfo(r.data);
      if (!item) throw new NbdProtocolError(`${who}: malformed export information`);
      if (item.type === INFO_EXPORT) {
        info.size = item.size;
        info.flags = item.flags;
      } else if (item.type === INFO_BLOCK_SIZE) {
        checkBlockSizes(item.minimum, item.preferred, item.maximum, who);
        info.minBlock = item.minimum;
        info.preferredBlock = item.preferred;
        info.maxPayload = item.maximum;
      }
      continue;
    }
    if (r.type === REP_ACK) break;
    if (r.type === REP_ERR_UNSUP) {
      // An old server: GO unknown, fall back (structured replies and contexts still hold).
      const fallback = await exportNameFallback(socket, reader, exportName, noZeroes, who);
      return { ...fallback, structured, allocationContext };
    }
    throw refusal(r, exportName, who);
  }
  if (info.size === undefined || info.flags === undefined) {
    throw new NbdProtocolError(`${who}: server accepted the export without describing it`);
  }
  return {
    size: info.size,
    flags: info.flags,
    structured,
    allocationContext,
    minBlock: info.minBlock ?? 1,
    preferredBlock: info.preferredBlock ?? 4096,
    maxPayload: info.maxPayload ?? 32 * 1024 * 1024,
  };
}

async function exportNameFallback(
  socket: Socket,
  reader: WireReader,
  exportName: string,
  noZeroes: boolean,
  who: string,
): Promise<ExportInfo> {
  await writeMessage(socket, [encodeOption(OPT_EXPORT_NAME, encodeString(exportName))]);
  // A server can only refuse NBD_OPT_EXPORT_NAME by hanging up.
  const b = await reader.read(noZeroes ? 10 : 134).catch((err) => {
    if (!(err instanceof ConnectionClosedError)) throw err;
    throw new NotFoundError(`${who}: server refused export '${exportName}'`);
  });
  return {
    size: readU64(b, 0),
    flags: new DataView(b.buffer, b.byteOffset).getUint16(8),
    structured: false,
    allocationContext: undefined,
    minBlock: 1,
    preferredBlock: 4096,
    maxPayload: 32 * 1024 * 1024,
  };
}

async function readOptionReply(
  reader: WireReader,
  option: number,
  who: string,
): Promise<OptionReply> {
  const header = decodeOptionReplyHeader(await reader.read(OPTION_REPLY_HEADER_SIZE));
  if (!header) throw new NbdProtocolError(`${who}: bad option reply magic`);
  if (header.option !== option) {
    throw new NbdProtocolError(`${who}: reply to option ${header.option}, expected ${option}`);
  }
  if (header.length > MAX_OPTION_REPLY) {
    throw new NbdProtocolError(`${who}: option reply of ${header.length} bytes`);
  }
  const data = new Uint8Array(await reader.read(header.length)); // a copy, never a view
  return { type: header.type, data };
}

function checkBlockSizes(min: number, preferred: number, max: number, who: string): void {
  const minOk = isPowerOfTwo(min) && min <= 65536;
  if (!minOk || !isPowerOfTwo(preferred) || preferred < min || max < min) {
    throw new NbdProtocolError(`${who}: invalid block sizes ${min}/${preferred}/${max}`);
  }
}

function refusal(r: OptionReply, exportName: string, who: string): DiskpipeError {
  const message = decodeString(r.data) ?? '';
  const detail = message ? `: ${message}` : '';
  if (r.type === REP_ERR_UNKNOWN) {
    return new NotFoundError(`${who}: no export named '${exportName}'${detail}`);
  }
  const kind = isOptionError(r.type) ? `error 0x${r.type.toString(16)}` : `reply ${r.type}`;
  return new NbdProtocolError(`${who}: server refused the export (${kind})${detail}`);
}
