/**
 * Server side of the fixed newstyle handshake: greeting, client flags, then options until the
 * client picks the export (EXPORT_NAME or GO) or leaves. Malformed options get an error reply
 * and haggling goes on; only a broken stream (bad magic, oversize option, unknown client flags)
 * ends the connection.
 */
import type { Socket } from 'node:net';
import { NbdProtocolError } from '../../errors.js';
import {
  decodeClientFlags,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfo,
  encodeMetaContextReply,
  encodeOptionReply,
  encodeServerReply,
  encodeString,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  INFO_NAME,
  META_BASE_ALLOCATION,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_LIST_META_CONTEXT,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  OPTION_HEADER_SIZE,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_META_CONTEXT,
  REP_SERVER,
} from '../protocol.js';
import { type WireReader, writeMessage } from '../wire.js';
import { MIN_BLOCK, PREFERRED_BLOCK, type ServedExport, transmissionFlags } from './export.js';

/** Option data larger than this is not a real client (names and queries are short strings). */
const MAX_OPTION_DATA = 64 * 1024;
/** Id of base:allocation in this server's replies (ids are opaque to clients). */
export const BASE_ALLOCATION_ID = 1;

export interface Negotiated {
  structured: boolean;
  /** Context id to answer BLOCK_STATUS with, when base:allocation was selected. */
  allocationContext: number | undefined;
}

export async function serverHandshake(
  socket: Socket,
  reader: WireReader,
  exp: ServedExport,
): Promise<Negotiated | undefined> {
  await writeMessage(socket, [encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)]);
  const { flags: clientFlags, known, noZeroes } = decodeClientFlags(await reader.read(4));
  if (!known) throw new NbdProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`);
  let structured = false;
  // The export name base:allocation was selected for (undefined: nothing selected).
  let metaFor: string | undefined;

  const reply = (option: number, type: number, data?: Uint8Array) =>
    writeMessage(socket, [encodeOptionReply(option, type, data)]);
  const fail = (option: number, type: number, message: string) =>
    reply(option, type, encodeString(message));
  /** The request when it decoded and names this export; else the error is sent. */
  const forThisExport = async <T extends { name: string }>(
    option: number,
    req: T | undefined,
    what: string,
  ): Promise<T | undefined> => {
    if (!req) {
      await fail(option, REP_ERR_INVALID, `malformed ${what}`);
      return undefined;
    }
    if (req.name !== exp.name) {
      await fail(option, REP_ERR_UNKNOWN, `no export named '${req.name}'`);
      return undefined;
    }
    return req;
  };

  for (;;) {
    const header = decodeOptionHeader(await reader.read(OPTION_HEADER_SIZE));
    if (!header) throw new NbdProtocolError('bad option magic');
    if (header.length > MAX_OPTION_DATA) {
      throw new NbdProtocolError(`option ${header.option} carries ${header.length} bytes`);
    }
    const data = new Uint8Array(await reader.read(header.length)); // a copy, never a view
    const { option } = header;
    switch (option) {
      case OPT_EXPORT_NAME: {
        const name = new TextDecoder().decode(data);
        if (name !== exp.name)
          throw new NbdProtocolError(`client asked for unknown export '${name}'`);
        const flags = transmissionFlags(exp, structured);
        await writeMessage(socket, [encodeExportNameReply(exp.image.size, flags, noZeroes)]);
        return { structured, allocationContext: allocationFor(metaFor, name) };
      }
      case OPT_ABORT:
        await reply(option, REP_ACK).catch(() => {});
        return undefined;
      case OPT_LIST:
        if (data.length !== 0) {
          await fail(option, REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
          break;
        }
        await reply(option, REP_SERVER, encodeServerReply(exp.name));
        await reply(option, REP_ACK);
        break;
      case OPT_INFO:
      case OPT_GO: {
        const req = await forThisExport(option, decodeInfoRequest(data), 'information request');
        if (!req) break;
        const size = exp.image.size;
        const flags = transmissionFlags(exp, structured);
        await reply(option, REP_INFO, encodeInfo({ type: INFO_EXPORT, size, flags }));
        if (req.requests.includes(INFO_NAME)) {
          await reply(option, REP_INFO, encodeInfo({ type: INFO_NAME, name: exp.name }));
        }
        if (req.requests.includes(INFO_BLOCK_SIZE)) {
          const info = {
            type: INFO_BLOCK_SIZE,
            minimum: MIN_BLOCK,
            preferred: PREFERRED_BLOCK,
            maximum: exp.maxPayload,
          } as const;
          await reply(option, REP_INFO, encodeInfo(info));
        }
        await reply(option, REP_ACK);
        if (option === OPT_GO)
          return { structured, allocationContext: allocationFor(metaFor, req.name) };
        break;
      }
      case OPT_STRUCTURED_REPLY:
        if (data.length !== 0 || structured) {
          await fail(option, REP_ERR_INVALID, 'structured replies: no data, and only once');
          break;
        }
        structured = true;
        await reply(option, REP_ACK);
        break;
      case OPT_LIST_META_CONTEXT:
      case OPT_SET_META_CONTEXT: {
        const set = option === OPT_SET_META_CONTEXT;
        if (set) metaFor = undefined; // SET replaces the selection even when it fails
        if (!structured) {
          await fail(option, REP_ERR_INVALID, 'negotiate structured replies first');
          break;
        }
        const req = await forThisExport(
          option,
          decodeMetaContextRequest(data),
          'meta context request',
        );
        if (!req) break;
        const matches = set
          ? req.queries.includes(META_BASE_ALLOCATION)
          : req.queries.length === 0 ||
            req.queries.some((q) => q === 'base:' || q === META_BASE_ALLOCATION);
        if (matches) {
          const id = set ? BASE_ALLOCATION_ID : 0;
          await reply(option, REP_META_CONTEXT, encodeMetaContextReply(id, META_BASE_ALLOCATION));
          if (set) metaFor = req.name;
        }
        await reply(option, REP_ACK);
        break;
      }
      default:
        // Includes STARTTLS: this server has no TLS.
        await fail(option, REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

function allocationFor(metaFor: string | undefined, exportName: string): number | undefined {
  return metaFor === exportName ? BASE_ALLOCATION_ID : undefined;
}
