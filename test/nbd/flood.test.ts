/**
 * One client must not freeze the server for everyone: a client that sends thousands of
 * pipelined 32 MiB reads and leaves had the server read them all (zero-filled, so without a
 * single event-loop turn) before it even greeted the next client. Asserted by counts and order
 * of events, never by time: the server and both clients share this process's event loop, so the
 * second client can only get anywhere while the server yields.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Image } from '../../src/image/types.js';
import * as P from '../../src/nbd/protocol.js';
import { type NbdServer, startNbdServer } from '../../src/nbd/server/index.js';
import { openImage } from '../../src/open.js';
import { sparseFile, tempDir } from '../helpers/peers.js';
import { RawSession } from './raw-session.js';

const dir = tempDir();
const READ = 32 * 1024 * 1024;
const FLOOD = 2500;
let image: Image;
let server: NbdServer;
let port: number;

before(async () => {
  // All holes: every read is a 32 MiB zero fill, with no file I/O to give the loop a turn.
  image = await openImage(sparseFile(join(dir, 'zero.raw'), READ), { format: 'raw' });
  server = await startNbdServer(image, { port: 0, log: () => {} });
  port = server.address.transport === 'tcp' ? server.address.port : 0;
});

after(async () => {
  await server.close();
  await image.close();
});

/** Waits, turn by turn, until the server has let go of every client. */
async function allGone(): Promise<void> {
  while (server.clients > 0) await nextTurn();
}

/** Sends FLOOD pipelined 32 MiB reads in one burst, then ends the stream and closes. */
function floodAndLeave(s: RawSession): void {
  const burst = Buffer.concat(
    Array.from({ length: FLOOD }, (_, i) =>
      P.encodeRequest({ type: P.CMD_READ, flags: 0, cookie: BigInt(i), offset: 0, length: READ }),
    ),
  );
  // The client reads no reply.
  s.socket.end(burst, () => s.socket.destroy());
}

test('a client that floods pipelined 32 MiB reads and leaves neither starves others nor keeps the server busy', async () => {
  const flood = await RawSession.open(port);
  await flood.negotiate();
  floodAndLeave(flood);
  const before = server.stats.requests;

  // Meanwhile a second client connects, negotiates and reads.
  const other = await openImage(server.uri, { format: 'raw' });
  const buf = new Uint8Array(4096);
  await other.read(buf, READ - 4096);
  const whenServed = server.stats.requests - before;
  await other.close();
  assert.ok(buf.every((b) => b === 0));
  assert.ok(
    whenServed < FLOOD,
    `the second client was served only after ${whenServed} flood requests`,
  );

  await allGone();
  const { requests, dropped } = server.stats;
  // The flood's reads were dropped once it had gone, not zero-filled for nobody.
  assert.ok(requests - before < 100, `${requests - before} requests were worked on`);
  assert.ok(dropped > FLOOD - 100, `only ${dropped} reads were dropped`);
});

test('several flooding clients at once: a new client still completes a read', async () => {
  const floods: RawSession[] = [];
  for (let c = 0; c < 3; c++) {
    const s = await RawSession.open(port);
    await s.negotiate();
    floods.push(s);
  }
  const before = server.stats.dropped;
  for (const s of floods) floodAndLeave(s);
  const other = await openImage(server.uri, { format: 'raw' });
  const buf = new Uint8Array(512);
  await other.read(buf, 0);
  await other.close();
  await allGone();
  assert.ok(buf.every((b) => b === 0));
  assert.ok(server.stats.dropped - before > 3 * (FLOOD - 100));
});
