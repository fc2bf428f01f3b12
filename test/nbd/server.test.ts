import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CowImage } from '../../src/filters/cow.js';
import { ImageWrapper } from '../../src/image/base.js';
import { collectExtents } from '../../src/image/extents.js';
import type { Image } from '../../src/image/types.js';
import * as P from '../../src/nbd/protocol.js';
import { type NbdServer, startNbdServer } from '../../src/nbd/server/index.js';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll } from '../helpers/extents.js';
import { sparseFile, tempDir } from '../helpers/peers.js';
import { RawSession } from './raw-session.js';

const dir = tempDir();
const SIZE = 16 * 1024 * 1024 + 512;
const quiet = { log: () => {} };

/** A sparse raw file with a few data runs (one at the odd end). */
function makeRaw(name: string): string {
  const path = sparseFile(join(dir, name), SIZE);
  const fd = openSync(path, 'r+');
  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  writeSync(fd, data, 0, data.length, 1024 * 1024);
  writeSync(fd, data, 0, 4096, 9 * 1024 * 1024);
  writeSync(fd, data, 0, 512, SIZE - 512);
  closeSync(fd);
  return path;
}

/** Counts bytes the server reads from the image, and can delay reads at one offset. */
class Probe extends ImageWrapper {
  bytesRead = 0;
  slowAt = -1;
  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.bytesRead += buf.length;
    if (offset === this.slowAt) await sleep(300);
    return super.read(buf, offset);
  }
}

async function serve(image: Image, opts = {}): Promise<NbdServer> {
  return startNbdServer(image, { port: 0, ...quiet, ...opts });
}

function portOf(server: NbdServer): number {
  return server.address.transport === 'tcp' ? server.address.port : 0;
}

test('read-only export: content and extents through diskpipe client; writes refused', async () => {
  const path = makeRaw('ro.raw');
  const local = await openImage(path);
  const server = await serve(local);
  try {
    const remote = await openImage(server.uri);
    assert.equal(remote.size, SIZE);
    assert.equal(remote.capabilities.write, false);
    assert.ok((await readAll(remote)).equals(readFileSync(path)));
    assert.deepEqual(await checkedExtents(remote), await collectExtents(local.extents()));
    assert.deepEqual(
      await checkedExtents(remote, 1000, 9 * 1024 * 1024),
      await collectExtents(local.extents(1000, 9 * 1024 * 1024)),
    );
    await remote.close();
    await assert.rejects(openImage(server.uri, { writable: true }), { code: 'NOT_CAPABLE' });
    // The server itself refuses writes with EPERM (a client that ignores READ_ONLY).
    const s = await RawSession.open(portOf(server));
    await s.negotiate();
    s.request(P.CMD_WRITE, 0, 4, 1n, 0, new Uint8Array(4));
    assert.deepEqual(await s.simpleReply(), { cookie: 1n, error: P.NBD_EPERM });
    s.request(P.CMD_WRITE_ZEROES, 0, 4096, 2n);
    assert.deepEqual(await s.simpleReply(), { cookie: 2n, error: P.NBD_EPERM });
    s.close();
    assert.ok(readFileSync(path).equals(readFileSync(path)));
  } finally {
    await server.close();
    await local.close();
  }
});

test('pipelined requests run concurrently and are answered out of order', async () => {
  const local = new Probe(await openImage(makeRaw('pipe.raw')));
  local.slowAt = 1024 * 1024;
  const server = await serve(local);
  const s = await RawSession.open(portOf(server));
  try {
    await s.negotiate();
    // Not adjacent: adjacent reads are served together (read-group.test.ts).
    s.request(P.CMD_READ, 1024 * 1024, 4096, 1n); // slow
    s.request(P.CMD_READ, 1024 * 1024 + 8192, 4096, 2n);
    const first = await s.simpleReply(4096);
    const second = await s.simpleReply(4096);
    assert.deepEqual([first.cookie, second.cookie], [2n, 1n]);
    assert.equal(first.data![0], (8192 * 7 + 3) & 0xff);
  } finally {
    s.close();
    await server.close();
    await local.close();
  }
});

test('diskpipe client: concurrent reads on one connection complete out of order', async () => {
  const local = new Probe(await openImage(makeRaw('ooo.raw')));
  local.slowAt = 1024 * 1024;
  const server = await serve(local);
  const remote = await openImage(server.uri);
  try {
    const done: string[] = [];
    const slow = remote.read(new Uint8Array(4096), 1024 * 1024).then(() => done.push('slow'));
    const fast = remote
      .read(new Uint8Array(4096), 1024 * 1024 + 8192)
      .then(() => done.push('fast'));
    await Promise.all([slow, fast]);
    assert.deepEqual(done, ['fast', 'slow']);
  } finally {
    await remote.close();
    await server.close();
    await local.close();
  }
});

test('structured READ sends holes without reading them; BLOCK_STATUS reports base:allocation', async () => {
  const local = new Probe(await openImage(makeRaw('holes.raw')));
  const server = await serve(local);
  const s = await RawSession.open(portOf(server));
  try {
    await s.negotiate({ structured: true, allocation: true });
    const length = 10 * 1024 * 1024;
    s.request(P.CMD_READ, 0, length, 7n);
    const got = Buffer.alloc(length, 0xee);
    let data = 0;
    for (;;) {
      const c = await s.chunk();
      assert.equal(c.cookie, 7n);
      const off = P.readU64(c.payload, 0);
      if (c.type === P.REPLY_TYPE_OFFSET_DATA) {
        got.set(c.payload.subarray(8), off);
        data += c.payload.length - 8;
      } else {
        assert.equal(c.type, P.REPLY_TYPE_OFFSET_HOLE);
        const hole = P.decodeOffsetHole(c.payload)!;
        got.fill(0, hole.offset, hole.offset + hole.length);
      }
      if (c.flags & P.REPLY_FLAG_DONE) break;
    }
    assert.ok(got.equals(readFileSync(join(dir, 'holes.raw')).subarray(0, length)));
    assert.equal(local.bytesRead, data, 'only data extents were read');
    assert.ok(data < 400_000);

    s.request(P.CMD_BLOCK_STATUS, 0, SIZE, 8n);
    const bs = await s.chunk();
    const status = P.decodeBlockStatus(bs.payload)!;
    const expected = (await collectExtents(local.extents())).map((e) => ({
      length: e.length,
      flags: (e.hole ? P.STATE_HOLE : 0) | (e.zero ? P.STATE_ZERO : 0),
    }));
    assert.deepEqual(status.descriptors, expected);
    s.request(P.CMD_BLOCK_STATUS, 0, SIZE, 9n, P.CMD_FLAG_REQ_ONE);
    assert.equal(P.decodeBlockStatus((await s.chunk()).payload)!.descriptors.length, 1);
  } finally {
    s.close();
    await server.close();
    await local.close();
  }
});

test('writable raw export: writes, zeroes and trims go through to the file', async () => {
  const path = makeRaw('rw.raw');
  const model = readFileSync(path);
  const local = await openImage(path, { writable: true });
  const server = await serve(local, { writable: true });
  try {
    const remote = await openImage(server.uri, { writable: true });
    assert.equal(remote.capabilities.write, true);
    const data = Buffer.alloc(5 * 1024 * 1024 + 3, 0x5a); // several requests, unaligned
    await remote.write!(data, 777);
    data.copy(model, 777);
    await remote.zero!(1024 * 1024, 8192);
    model.fill(0, 1024 * 1024, 1024 * 1024 + 8192);
    await remote.trim!(12 * 1024 * 1024, 4096);
    await remote.flush!();
    assert.ok((await readAll(remote)).equals(model));
    await remote.close();
    const onDisk = readFileSync(path);
    onDisk.fill(0, 12 * 1024 * 1024, 12 * 1024 * 1024 + 4096); // trimmed: may read anything
    model.fill(0, 12 * 1024 * 1024, 12 * 1024 * 1024 + 4096);
    assert.ok(onDisk.equals(model));
  } finally {
    await server.close();
    await local.close();
  }
});

test('overlay export: clients share the overlay, the image is untouched, shared limit holds', async () => {
  const path = makeRaw('ov.raw');
  const before = readFileSync(path);
  const overlay = new CowImage(await openImage(path));
  const server = await serve(overlay, { writable: true, shared: 2 });
  try {
    const a = await openImage(server.uri, { writable: true });
    const b = await openImage(server.uri);
    await a.write!(Buffer.alloc(100, 0x42), 50);
    await a.zero!(1024 * 1024, 300_000);
    const buf = Buffer.alloc(200);
    await b.read(buf, 0);
    assert.deepEqual([buf[49], buf[50], buf[149], buf[150]], [0, 0x42, 0x42, 0]);
    // Whole zeroed blocks read as zero extents; the partial block at the end was copied up.
    const ext = await checkedExtents(b, 1024 * 1024, 300_000);
    assert.deepEqual(ext[0], { offset: 1024 * 1024, length: 262144, zero: true, hole: true });
    const zeroed = Buffer.alloc(300_000, 1);
    await b.read(zeroed, 1024 * 1024);
    assert.ok(zeroed.every((x) => x === 0));
    // A third client is over the limit: the server hangs up on it.
    const s = await RawSession.open(portOf(server));
    assert.equal(await s.closed(), true);
    await a.close();
    await b.close();
  } finally {
    await server.close();
    await overlay.close();
  }
  assert.ok(readFileSync(path).equals(before));
});

test('once: the server stops when its last client leaves', async () => {
  const local = await openImage(makeRaw('once.raw'));
  const server = await serve(local, { once: true });
  const remote = await openImage(server.uri);
  assert.equal(server.clients, 1);
  await remote.close();
  await server.done;
  await assert.rejects(openImage(server.uri), { code: 'IO' });
  await local.close();
});
