/**
 * Handshake and idle timeouts: a client that stalls in the handshake is disconnected and frees
 * its slot; with an idle timeout, a connection without requests is closed, one waiting for a
 * slow request is not. The tests wait for the server's close without a deadline of their own.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageWrapper } from '../../src/image/base.js';
import type { Image } from '../../src/image/types.js';
import * as P from '../../src/nbd/protocol.js';
import { type NbdServer, startNbdServer } from '../../src/nbd/server/index.js';
import { openImage } from '../../src/open.js';
import { diskpipe, sparseFile, tempDir } from '../helpers/peers.js';
import { startServe } from './helpers.js';
import { RawSession } from './raw-session.js';

const dir = tempDir();
const path = sparseFile(join(dir, 'disk.raw'), 1024 * 1024);
// Data, not holes: reads of it reach Image.read (holes are answered from the extents).
const dataPath = join(dir, 'data.raw');
writeFileSync(dataPath, Buffer.alloc(1024 * 1024, 0x5a));

function portOf(server: NbdServer): number {
  return server.address.transport === 'tcp' ? server.address.port : 0;
}

/** Resolves once the server has closed the session's connection. */
async function closedByServer(s: RawSession): Promise<void> {
  if (!s.socket.closed) await once(s.socket, 'close');
}

test('a stalled handshake is closed after handshakeTimeout and frees its slot', async () => {
  const image = await openImage(path, { format: 'raw' });
  const server = await startNbdServer(image, {
    port: 0,
    shared: 1,
    handshakeTimeout: 0.2,
    log: () => {},
  });
  try {
    const stalled = await RawSession.open(portOf(server));
    await stalled.greeting(); // and never answers it
    await closedByServer(stalled);
    assert.equal(server.stats.handshakeTimeouts, 1);
    // The only slot is free again: a real client gets in.
    const client = await openImage(server.uri, { format: 'raw' });
    await client.read(new Uint8Array(512), 0);
    await client.close();
  } finally {
    await server.close();
    await image.close();
  }
});

/** An image whose reads wait until the test opens the gate. */
class GatedImage extends ImageWrapper {
  entered: Promise<void>;
  private enter!: () => void;
  private gate: Promise<void>;
  open!: () => void;

  constructor(next: Image) {
    super(next);
    this.entered = new Promise((r) => {
      this.enter = r;
    });
    this.gate = new Promise((r) => {
      this.open = r;
    });
  }

  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.enter();
    await this.gate;
    return this.next.read(buf, offset);
  }
}

test('idleTimeout closes a connection without requests, never one waiting for a reply', async () => {
  const image = new GatedImage(await openImage(dataPath, { format: 'raw' }));
  // Long enough that a busy machine's pause between the handshake and the first request
  // never looks idle.
  const idleTimeout = 1;
  const server = await startNbdServer(image, { port: 0, idleTimeout, log: () => {} });
  try {
    const s = await RawSession.open(portOf(server));
    await s.negotiate();
    s.request(P.CMD_READ, 0, 4096, 1n);
    await image.entered;
    // Timers fire in order: the idle timer, due first, has had its turn by the time this
    // sleep ends, and must have let the busy connection be.
    await sleep(idleTimeout * 3000);
    assert.equal(server.stats.idleTimeouts, 0);
    assert.equal(s.socket.closed, false);
    image.open();
    const reply = await s.simpleReply(4096);
    assert.equal(reply.error, 0);
    // Now nothing is in flight and the client says nothing more.
    await closedByServer(s);
    assert.equal(server.stats.idleTimeouts, 1);
  } finally {
    await server.close();
    await image.close();
  }
});

test('without an idle timeout, a quiet connection stays open', async () => {
  const image = await openImage(path, { format: 'raw' });
  const server = await startNbdServer(image, { port: 0, handshakeTimeout: 0.2, log: () => {} });
  try {
    const s = await RawSession.open(portOf(server));
    await s.negotiate();
    // Past the handshake timeout too: it no longer applies once negotiated.
    await sleep(600);
    assert.equal(s.socket.closed, false);
    s.request(P.CMD_READ, 0, 512, 7n);
    assert.equal((await s.simpleReply(512)).cookie, 7n);
    s.close();
  } finally {
    await server.close();
    await image.close();
  }
});

test('serve --idle-timeout and --handshake-timeout: parsed as DUR, bad values exit 2', async () => {
  for (const [flag, value] of [
    ['--idle-timeout', '5x'],
    ['--idle-timeout', '0s'],
    ['--handshake-timeout', '10'],
  ] as const) {
    const r = diskpipe(['serve', flag, value, path]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, new RegExp(`^diskpipe: ${flag} must be a duration`));
  }
  const served = await startServe(['--idle-timeout', '1s', '--port', '0', path]);
  try {
    const port = Number(new URL(served.uri).port);
    const s = await RawSession.open(port);
    await s.negotiate();
    await closedByServer(s);
  } finally {
    await served.stop();
  }
});
