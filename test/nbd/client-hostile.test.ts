/**
 * diskpipe's NBD client against a scripted hostile server: every inconsistent reply becomes an
 * NbdProtocolError (never a hang, a crash or wrong bytes believed).
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { NbdClient } from '../../src/nbd/client/connection.js';
import * as P from '../../src/nbd/protocol.js';
import { WireReader } from '../../src/nbd/wire.js';

const SIZE = 1024 * 1024;
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

type Script = (socket: Socket, req: P.Request, reader: WireReader) => void;

/** A server that negotiates normally, then answers each request with `script`. */
async function hostile(script: Script, size = SIZE): Promise<number> {
  const server = createServer(async (socket) => {
    socket.on('error', () => {});
    const reader = new WireReader(socket);
    try {
      socket.write(P.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES));
      await reader.read(4);
      for (;;) {
        const h = P.decodeOptionHeader(await reader.read(16))!;
        await reader.read(h.length);
        if (h.option === P.OPT_SET_META_CONTEXT) {
          socket.write(
            P.encodeOptionReply(
              h.option,
              P.REP_META_CONTEXT,
              P.encodeMetaContextReply(5, 'base:allocation'),
            ),
          );
        }
        if (h.option === P.OPT_GO) {
          const info = P.encodeInfo({
            type: P.INFO_EXPORT,
            size,
            flags: P.TF_HAS_FLAGS | P.TF_READ_ONLY,
          });
          socket.write(P.encodeOptionReply(h.option, P.REP_INFO, info));
        }
        socket.write(P.encodeOptionReply(h.option, P.REP_ACK));
        if (h.option === P.OPT_GO) break;
      }
      for (;;) {
        const req = P.decodeRequest(await reader.read(P.REQUEST_SIZE))!;
        if (req.type === P.CMD_DISC) return socket.end();
        script(socket, req, reader);
      }
    } catch {
      socket.destroy();
    }
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : 0;
}

async function client(port: number, timeout = 5): Promise<NbdClient> {
  return NbdClient.connect(
    { transport: 'tcp', host: '127.0.0.1', port, exportName: '' },
    { timeout },
  );
}

const chunk = (cookie: bigint, type: number, flags: number, payload: Uint8Array) => [
  P.encodeChunkHeader(cookie, type, flags, payload.length),
  payload,
];

function offsetData(offset: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  P.writeU64(b, 0, offset);
  b.set(data, 8);
  return b;
}

const cases: [string, Script][] = [
  ['a reply for a cookie never sent', (s, r) => s.write(P.encodeSimpleReply(r.cookie + 99n, 0))],
  ['bad reply magic', (s) => s.write(new Uint8Array(20).fill(0x55))],
  [
    'data outside the requested range',
    (s, r) => {
      for (const b of chunk(
        r.cookie,
        P.REPLY_TYPE_OFFSET_DATA,
        1,
        offsetData(r.offset + r.length, new Uint8Array(4)),
      ))
        s.write(b);
    },
  ],
  [
    'overlapping data chunks',
    (s, r) => {
      const half = offsetData(r.offset, new Uint8Array(r.length / 2));
      for (const b of [...chunk(r.cookie, 1, 0, half), ...chunk(r.cookie, 1, 1, half)]) s.write(b);
    },
  ],
  [
    'a reply that ends before covering the range',
    (s, r) => {
      for (const b of chunk(r.cookie, 1, 1, offsetData(r.offset, new Uint8Array(r.length - 1))))
        s.write(b);
    },
  ],
  [
    'a data chunk longer than the request',
    (s, r) => s.write(P.encodeChunkHeader(r.cookie, P.REPLY_TYPE_OFFSET_DATA, 1, 0xffffffff)),
  ],
  ['an unknown chunk type', (s, r) => s.write(P.encodeChunkHeader(r.cookie, 77, 1, 0))],
  [
    'a hang-up in the middle of a reply',
    (s, r) => {
      s.write(P.encodeChunkHeader(r.cookie, P.REPLY_TYPE_OFFSET_DATA, 1, 8 + r.length));
      s.destroy();
    },
  ],
];

for (const [name, script] of cases) {
  test(`client rejects ${name}`, async () => {
    const c = await client(await hostile(script));
    await assert.rejects(c.pread(new Uint8Array(4096), 0), { code: 'NBD_PROTOCOL' });
    // The connection is unusable after a protocol error; later requests fail at once.
    await assert.rejects(c.pread(new Uint8Array(10), 0), { code: 'NBD_PROTOCOL' });
    await c.close();
  });
}

test('client rejects block status with a zero-length descriptor or a huge chunk', async () => {
  for (const payload of [
    new Uint8Array([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]),
    new Uint8Array([0, 0, 0, 5]),
  ]) {
    const port = await hostile((s, r) => {
      for (const b of chunk(r.cookie, P.REPLY_TYPE_BLOCK_STATUS, 1, payload)) s.write(b);
    });
    const c = await client(port);
    assert.equal(c.hasAllocation, true);
    await assert.rejects(
      (async () => {
        for await (const _ of c.extents(0, SIZE));
      })(),
      { code: 'NBD_PROTOCOL' },
    );
    await c.close();
  }
  const port = await hostile((s, r) =>
    s.write(P.encodeChunkHeader(r.cookie, P.REPLY_TYPE_BLOCK_STATUS, 1, 0x7fffffff)),
  );
  const c = await client(port);
  await assert.rejects(
    (async () => {
      for await (const _ of c.extents(0, SIZE));
    })(),
    { code: 'NBD_PROTOCOL' },
  );
  await c.close();
});

test('a server that never answers times out; an export beyond 2^53 is refused', async () => {
  const c = await client(await hostile(() => {}), 0.5);
  await assert.rejects(c.pread(new Uint8Array(8), 0), /stopped answering/);
  await c.close();
  await assert.rejects(client(await hostile(() => {}, 2 ** 60)), { code: 'NBD_PROTOCOL' });
});

test('an error reply fails only its request; the connection goes on', async () => {
  let first = true;
  const port = await hostile((s, r) => {
    if (first) {
      first = false;
      for (const b of chunk(
        r.cookie,
        P.REPLY_TYPE_ERROR,
        1,
        new Uint8Array([0, 0, 0, 5, 0, 2, 0x68, 0x69]),
      ))
        s.write(b);
      return;
    }
    for (const b of chunk(r.cookie, 1, 1, offsetData(r.offset, new Uint8Array(r.length).fill(9))))
      s.write(b);
  });
  const c = await client(port);
  await assert.rejects(c.pread(new Uint8Array(8), 0), (err: Error & { code: string }) => {
    assert.equal(err.code, 'IO');
    assert.match(err.message, /EIO.*: hi$/);
    return true;
  });
  const buf = new Uint8Array(8);
  await c.pread(buf, 100);
  assert.deepEqual([...buf], Array(8).fill(9));
  await c.close();
});
