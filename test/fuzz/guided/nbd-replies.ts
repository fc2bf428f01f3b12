/**
 * The fake NBD server of the nbd-client target: the input is what a server sends, and it is
 * sent in turns, each part answering one message of diskpipe's client (the greeting on
 * connect, option replies up to a final one per option, one reply per request). Sent all at
 * once, the first transmission reply arrived before its request and was refused as an unknown
 * cookie, so no input ever got past the handshake. The input is cut where a real server's
 * stream would be cut; where it does not parse (a mutated magic), the rest is sent at once.
 * Facts from the NBD protocol specification.
 */
import type { Socket } from 'node:net';

const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
const FLAG_NO_ZEROES = 1 << 1;
const OPT_EXPORT_NAME = 1;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_FLAG_ERROR = 0x80000000;
const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const REPLY_FLAG_DONE = 1;

/** Serves `input` to one client on `socket`, in turns, then ends the stream. */
export function replayReplies(socket: Socket, input: Uint8Array): void {
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const noZeroes = bytes.length >= 18 && (bytes.readUInt16BE(16) & FLAG_NO_ZEROES) !== 0;
  let at = 0;
  let phase: 'flags' | 'options' | 'transmission' = 'flags';
  let pending = Buffer.alloc(0);

  const send = (n: number): void => {
    const end = Math.min(bytes.length, at + n);
    if (end > at && !socket.writableEnded) socket.write(bytes.subarray(at, end));
    at = end;
    if (at >= bytes.length && !socket.writableEnded) socket.end();
  };
  const rest = (): void => send(bytes.length - at);
  const left = (): number => bytes.length - at;

  /** Option replies up to a final one (ACK or an error); returns the final type. */
  const answerOption = (): number | undefined => {
    while (left() >= 20) {
      if (bytes.readBigUInt64BE(at) !== OPTION_REPLY_MAGIC) break;
      const type = bytes.readUInt32BE(at + 12);
      send(20 + bytes.readUInt32BE(at + 16));
      if (type === REP_ACK || (type & REP_FLAG_ERROR) !== 0) return type;
    }
    rest();
    return undefined;
  };

  /** One reply: a simple one (with the data of a successful read) or chunks up to DONE. */
  const answerRequest = (type: number, length: number): void => {
    if (left() >= 16 && bytes.readUInt32BE(at) === SIMPLE_REPLY_MAGIC) {
      const ok = bytes.readUInt32BE(at + 4) === 0;
      send(16 + (type === CMD_READ && ok ? length : 0));
      return;
    }
    while (left() >= 20 && bytes.readUInt32BE(at) === STRUCTURED_REPLY_MAGIC) {
      const done = (bytes.readUInt16BE(at + 4) & REPLY_FLAG_DONE) !== 0;
      send(20 + bytes.readUInt32BE(at + 16));
      if (done) return;
    }
    rest();
  };

  /** Handles one complete client message; returns its length (0: not complete yet). */
  const step = (b: Buffer): number => {
    if (phase === 'flags') {
      if (b.length < 4) return 0;
      phase = 'options';
      return 4;
    }
    if (phase === 'options') {
      if (b.length < 16 || b.length < 16 + b.readUInt32BE(12)) return 0;
      const option = b.readUInt32BE(8);
      if (option === OPT_EXPORT_NAME) {
        send(noZeroes ? 10 : 134);
        phase = 'transmission';
      } else if (answerOption() === REP_ACK && option === OPT_GO) phase = 'transmission';
      return 16 + b.readUInt32BE(12);
    }
    if (b.length < 28) return 0;
    const type = b.readUInt16BE(6);
    const length = b.readUInt32BE(24);
    const size = 28 + (type === CMD_WRITE ? length : 0);
    if (b.length < size) return 0;
    if (type !== CMD_DISC) answerRequest(type, length);
    return size;
  };

  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    for (let n = step(pending); n > 0; n = step(pending)) pending = pending.subarray(n);
  });
  send(18); // the greeting
}
