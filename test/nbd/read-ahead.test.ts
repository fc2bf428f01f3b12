/**
 * The server reads READ data only a bounded distance ahead of its socket: a client that
 * pipelines many reads and never takes the replies makes it read its read-ahead (plus what the
 * kernel buffers took), not everything it asked for.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageWrapper } from '../../src/image/base.js';
import * as P from '../../src/nbd/protocol.js';
import { startNbdServer } from '../../src/nbd/server/index.js';
import { openImage } from '../../src/open.js';
import { sparseFile, tempDir } from '../helpers/peers.js';
import { RawSession } from './raw-session.js';

const MiB = 1024 * 1024;
const dir = tempDir();
const path = sparseFile(join(dir, 'dense.raw'), 64 * MiB);

/** Reports everything as data, so every READ really reads, and counts what it read. */
class Counting extends ImageWrapper {
  bytesRead = 0;
  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.bytesRead += buf.length;
    return super.read(buf, offset);
  }
  override async *extents(offset = 0, length = this.size - offset) {
    yield { offset, length, zero: false, hole: false };
  }
}

/** Bytes the server read for 64 pipelined 1 MiB READs whose replies are never read. */
async function readWithoutTaking(readAhead: number, atLeast: number): Promise<number> {
  const image = new Counting(await openImage(path));
  const srv = await startNbdServer(image, {
    port: 0,
    readAheadPerConnection: readAhead,
    log: () => {},
  });
  const s = await RawSession.open(srv.address.transport === 'tcp' ? srv.address.port : 0);
  try {
    await s.negotiate();
    s.socket.pause();
    for (let i = 0; i < 64; i++) s.request(P.CMD_READ, i * MiB, MiB, BigInt(i));
    // Wait for the server to have read `atLeast` (no deadline: a slow machine only takes
    // longer), then give it a moment more to overshoot if it would; a busy machine can only
    // make it read less in that moment, never more.
    while (image.bytesRead < atLeast) await sleep(20);
    await sleep(300);
    return image.bytesRead;
  } finally {
    s.close();
    await srv.close();
    await image.close();
  }
}

test('read-ahead bounds what the server reads for a client that takes nothing', async () => {
  const bounded = await readWithoutTaking(MiB, MiB);
  // 1 MiB read ahead, plus what the socket buffers hold (a few MiB on loopback).
  assert.ok(bounded >= MiB, `read ${bounded} bytes`);
  assert.ok(bounded <= 16 * MiB, `read ${bounded} bytes`);
  // The same client against a server that may read all of it ahead.
  const unbounded = await readWithoutTaking(64 * MiB, 48 * MiB);
  assert.ok(unbounded >= 48 * MiB, `read ${unbounded} bytes with a 64 MiB read-ahead`);
});
