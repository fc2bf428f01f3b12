/**
 * The client parses replies as bytes arrive and reads payloads in place: replies cut at odd
 * places (one byte, a header split from its payload, a chunk ending mid-read), chunks of two
 * requests interleaved, chunks out of order, and simple replies must all give the exact bytes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { NbdClient } from '../../src/nbd/client/connection.js';
import * as P from '../../src/nbd/protocol.js';
import { WireReader } from '../../src/nbd/wire.js';

const SIZE = 4 * 1024 * 1024;
const disk = randomBytes(SIZE);
const servers: Server[] = [];
const clients: NbdClient[] = [];
after(async () => {
  // Also after a failed assertion: nothing may keep the process alive.
  await Promise.all(clients.map((c) => c.close()));
  for (const s of servers) s.close();
});

/** Cuts each message into pieces of these sizes in turn, each written on its own tick. */
const CUTS = [1, 3, 19, 4093, 65537, 7, 200_000];

async function drip(socket: Socket, message: Uint8Array): Promise<void> {
  for (let at = 0, i = 0; at < message.length; i++) {
    const n = CUTS[i % CUTS.length]!;
    socket.write(message.subarray(at, at + n));
    at += n;
    await tick();
  }
}

type Answer = (reqs: P.Request[]) => Uint8Array[];

/**
 * A server that negotiates (structured replies or not), then waits for `batch` requests and
 * sends what `answer` makes of them, dripped.
 */
async function server(structured: boolean, batch: number, answer: Answer): Promise<number> {
  const srv = createServer(async (socket) => {
    socket.on('error', () => {});
    const reader = new WireReader(socket);
    try {
      socket.write(P.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES));
      await reader.read(4);
      for (;;) {
        const h = P.decodeOptionHeader(await reader.read(16))!;
        await reader.read(h.length);
        if (h.option === P.OPT_STRUCTURED_REPLY && !structured) {
          socket.write(P.encodeOptionReply(h.option, P.REP_ERR_UNSUP));
          continue;
        }
        if (h.option === P.OPT_GO) {
          const flags = P.TF_HAS_FLAGS | P.TF_READ_ONLY;
          const info = P.encodeInfo({ type: P.INFO_EXPORT, size: SIZE, flags });
          socket.write(P.encodeOptionReply(h.option, P.REP_INFO, info));
        }
        socket.write(P.encodeOptionReply(h.option, P.REP_ACK));
        if (h.option === P.OPT_GO) break;
      }
      for (;;) {
        const reqs: P.Request[] = [];
        while (reqs.length < batch) {
          const req = P.decodeRequest(await reader.read(P.REQUEST_SIZE))!;
          if (req.type === P.CMD_DISC) return socket.end();
          reqs.push(req);
        }
        for (const m of answer(reqs)) await drip(socket, m);
      }
    } catch {
      socket.destroy();
    }
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  return typeof addr === 'object' && addr ? addr.port : 0;
}

async function connect(port: number, requestSize?: number): Promise<NbdClient> {
  const address = { transport: 'tcp', host: '127.0.0.1', port, exportName: '' } as const;
  const c = await NbdClient.connect(address, { timeout: 10, requestSize });
  clients.push(c);
  return c;
}

function data(cookie: bigint, flags: number, offset: number, length: number): Uint8Array {
  const h = P.encodeOffsetDataHeader(cookie, flags, offset, length);
  return Buffer.concat([h, disk.subarray(offset, offset + length)]);
}

/** What a READ of [offset, offset+length) holds when [hole, hole+holeLength) reads as zero. */
function expected(offset: number, length: number, hole: number, holeLength: number): Buffer {
  const b = Buffer.from(disk.subarray(offset, offset + length));
  b.fill(0, hole - offset, hole - offset + holeLength);
  return b;
}

test('structured replies in odd pieces: data, hole and data chunks out of order', async () => {
  // Each READ: its tail data chunk first, then the hole, then the head (DONE) last.
  const port = await server(true, 1, ([r]) => {
    const { cookie, offset, length } = r!;
    const a = 5000;
    const b = 9000;
    return [
      data(cookie, 0, offset + b, length - b),
      P.encodeOffsetHole(cookie, 0, offset + a, b - a),
      data(cookie, P.REPLY_FLAG_DONE, offset, a),
    ];
  });
  const c = await connect(port, 2 * 1024 * 1024); // one request per pread
  for (const [offset, length] of [
    [0, 300_000],
    [123_457, 1024 * 1024],
    [SIZE - 20_000, 20_000],
  ] as const) {
    const buf = new Uint8Array(length).fill(0xee);
    await c.pread(buf, offset);
    assert.ok(Buffer.from(buf).equals(expected(offset, length, offset + 5000, 4000)));
  }
  await c.close();
});

test('chunks of two requests interleave; each lands in its own buffer', async () => {
  const port = await server(true, 2, ([r1, r2]) => {
    const half = (r: P.Request) => r.length / 2;
    return [
      data(r2!.cookie, 0, r2!.offset + half(r2!), half(r2!)),
      data(r1!.cookie, 0, r1!.offset, half(r1!)),
      data(r2!.cookie, P.REPLY_FLAG_DONE, r2!.offset, half(r2!)),
      data(r1!.cookie, P.REPLY_FLAG_DONE, r1!.offset + half(r1!), half(r1!)),
    ];
  });
  // 512 KiB requests: a 1 MiB pread is two requests in flight at once.
  const c = await connect(port, 512 * 1024);
  const buf = new Uint8Array(1024 * 1024);
  await c.pread(buf, 777_777);
  assert.ok(Buffer.from(buf).equals(disk.subarray(777_777, 777_777 + buf.length)));
  await c.close();
});

test('simple replies in odd pieces (a server without structured replies)', async () => {
  const port = await server(false, 1, ([r]) => [
    Buffer.concat([
      P.encodeSimpleReply(r!.cookie, 0),
      disk.subarray(r!.offset, r!.offset + r!.length),
    ]),
  ]);
  const c = await connect(port);
  for (const [offset, length] of [
    [0, 1],
    [1, 70_000],
    [2 * 1024 * 1024 + 3, 1024 * 1024 + 5],
  ] as const) {
    const buf = new Uint8Array(length);
    await c.pread(buf, offset);
    assert.ok(Buffer.from(buf).equals(disk.subarray(offset, offset + length)));
  }
  await c.close();
});
