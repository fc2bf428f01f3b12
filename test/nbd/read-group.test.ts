/**
 * Adjacent pipelined READs are served with one image read (one extent walk, one read per data
 * extent), and each still gets its own exact reply: data, holes, DF and simple replies, and an
 * error that belongs to one request only.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { IoError } from '../../src/errors.js';
import { ImageWrapper } from '../../src/image/base.js';
import * as P from '../../src/nbd/protocol.js';
import { startNbdServer } from '../../src/nbd/server/index.js';
import { openImage } from '../../src/open.js';
import { sparseFile, tempDir } from '../helpers/peers.js';
import { RawSession } from './raw-session.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = tempDir();

/** 8 MiB: data in [0, 1 MiB + 100 KiB) and [3 MiB, 4 MiB), holes elsewhere. */
function makeRaw(name: string): string {
  const path = sparseFile(join(dir, name), 8 * MiB);
  const fd = openSync(path, 'r+');
  const data = Buffer.alloc(MiB + 100 * KiB);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 5) & 0xff;
  writeSync(fd, data, 0, data.length, 0);
  writeSync(fd, data, 0, MiB, 3 * MiB);
  closeSync(fd);
  return path;
}

/** Counts image reads; fails reads that touch `failAt`. */
class Probe extends ImageWrapper {
  reads = 0;
  failAt = -1;
  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.reads++;
    if (offset <= this.failAt && this.failAt < offset + buf.length) {
      throw new IoError(`injected failure at ${this.failAt}`);
    }
    return super.read(buf, offset);
  }
}

async function session(path: string, structured: boolean) {
  const image = new Probe(await openImage(path));
  const server = await startNbdServer(image, { port: 0, log: () => {} });
  const port = server.address.transport === 'tcp' ? server.address.port : 0;
  const s = await RawSession.open(port);
  await s.negotiate({ structured });
  const close = async () => {
    s.close();
    await server.close();
    await image.close();
  };
  return { image, s, close };
}

/** Sends the requests in one write, so the server parses them all in one turn. */
function pipeline(s: RawSession, reqs: { offset: number; length: number; flags?: number }[]) {
  s.socket.cork();
  reqs.forEach((r, i) => {
    s.request(P.CMD_READ, r.offset, r.length, BigInt(i), r.flags ?? 0);
  });
  s.socket.uncork();
}

/** Reads structured replies until every cookie is done; each request's bytes, holes as 0. */
/** Pipelines `reqs`, and checks every structured reply is free of errors and equals `file`. */
async function readAllAndCompare(
  s: RawSession,
  reqs: { offset: number; length: number }[],
  file: Buffer,
): Promise<void> {
  pipeline(s, reqs);
  const { got, errors } = await structuredReplies(s, reqs);
  assert.equal(errors.size, 0);
  reqs.forEach((r, i) => {
    assert.ok(got[i]!.equals(file.subarray(r.offset, r.offset + r.length)), `request ${i}`);
  });
}

async function structuredReplies(s: RawSession, reqs: { offset: number; length: number }[]) {
  const got = reqs.map((r) => Buffer.alloc(r.length, 0xee));
  const errors = new Map<number, number>();
  let open = reqs.length;
  while (open > 0) {
    const c = await s.chunk();
    const i = Number(c.cookie);
    const r = reqs[i]!;
    if (c.type === P.REPLY_TYPE_OFFSET_DATA) {
      const off = P.readU64(c.payload, 0);
      got[i]!.set(c.payload.subarray(8), off - r.offset);
    } else if (c.type === P.REPLY_TYPE_OFFSET_HOLE) {
      const hole = P.decodeOffsetHole(c.payload)!;
      got[i]!.fill(0, hole.offset - r.offset, hole.offset - r.offset + hole.length);
    } else {
      errors.set(i, new DataView(c.payload.buffer, c.payload.byteOffset).getUint32(0));
    }
    if (c.flags & P.REPLY_FLAG_DONE) open--;
  }
  return { got, errors };
}

const adjacent = (from: number, n: number, size: number) =>
  Array.from({ length: n }, (_, i) => ({ offset: from + i * size, length: size }));

test('adjacent pipelined READs take one image read; replies carry data and holes exactly', async () => {
  const path = makeRaw('group.raw');
  const file = readFileSync(path);
  const { image, s, close } = await session(path, true);
  try {
    // 768 KiB .. 3.25 MiB: data, a hole from 1.1 MiB to 3 MiB, data again.
    const reqs = adjacent(768 * KiB, 10, 256 * KiB);
    await readAllAndCompare(s, reqs, file);
    // One read per data extent of each group: two groups, one data extent each.
    assert.ok(image.reads <= 2, `${image.reads} image reads`);
    // All data: eight requests, one read.
    image.reads = 0;
    const dense = adjacent(3 * MiB, 8, 128 * KiB);
    pipeline(s, dense);
    const second = await structuredReplies(s, dense);
    dense.forEach((r, i) => {
      assert.ok(second.got[i]!.equals(file.subarray(r.offset, r.offset + r.length)), `dense ${i}`);
    });
    assert.ok(image.reads <= 2, `${image.reads} image reads for 8 adjacent requests`);
  } finally {
    await close();
  }
});

test('grouped READs: DF and simple replies carry zeroes as data', async () => {
  const path = makeRaw('flat.raw');
  const file = readFileSync(path);
  const structured = await session(path, true);
  try {
    const reqs = adjacent(MiB, 4, 128 * KiB).map((r) => ({ ...r, flags: P.CMD_FLAG_DF }));
    pipeline(structured.s, reqs);
    const { got } = await structuredReplies(structured.s, reqs);
    reqs.forEach((r, i) => {
      assert.ok(got[i]!.equals(file.subarray(r.offset, r.offset + r.length)), `DF request ${i}`);
    });
  } finally {
    await structured.close();
  }
  const simple = await session(path, false);
  try {
    const reqs = adjacent(MiB - 64 * KiB, 4, 64 * KiB);
    pipeline(simple.s, reqs);
    for (let n = 0; n < reqs.length; n++) {
      const reply = await simple.s.simpleReply(64 * KiB);
      const r = reqs[Number(reply.cookie)]!;
      assert.equal(reply.error, 0);
      assert.ok(Buffer.from(reply.data!).equals(file.subarray(r.offset, r.offset + r.length)));
    }
    assert.ok(simple.image.reads <= 2, `${simple.image.reads} image reads`);
  } finally {
    await simple.close();
  }
});

test('an empty READ next to others is answered on its own', async () => {
  const path = makeRaw('empty.raw');
  const file = readFileSync(path);
  const { s, close } = await session(path, true);
  try {
    const at = 512 * KiB; // all data
    const reqs = [
      { offset: at, length: 0 },
      { offset: at, length: 64 * KiB },
      { offset: at + 64 * KiB, length: 0 },
      { offset: at + 64 * KiB, length: 64 * KiB },
    ];
    pipeline(s, reqs);
    const done = new Set<number>();
    const got = reqs.map((r) => Buffer.alloc(r.length));
    while (done.size < reqs.length) {
      const c = await s.chunk();
      const i = Number(c.cookie);
      if (c.type === P.REPLY_TYPE_OFFSET_DATA) {
        got[i]!.set(c.payload.subarray(8), P.readU64(c.payload, 0) - reqs[i]!.offset);
      } else {
        assert.equal(c.type, P.REPLY_TYPE_NONE, `request ${i}`);
      }
      if (c.flags & P.REPLY_FLAG_DONE) done.add(i);
    }
    for (const i of [1, 3]) {
      const r = reqs[i]!;
      assert.ok(got[i]!.equals(file.subarray(r.offset, r.offset + r.length)), `request ${i}`);
    }
  } finally {
    await close();
  }
});

test('a failing read in a group fails only the request it belongs to', async () => {
  const path = makeRaw('fail.raw');
  const file = readFileSync(path);
  const { image, s, close } = await session(path, true);
  try {
    image.failAt = 3 * MiB + 300 * KiB;
    const reqs = adjacent(3 * MiB, 4, 128 * KiB);
    pipeline(s, reqs);
    const { got, errors } = await structuredReplies(s, reqs);
    assert.deepEqual([...errors.keys()], [2]);
    assert.equal(errors.get(2), P.NBD_EIO);
    for (const i of [0, 1, 3]) {
      const r = reqs[i]!;
      assert.ok(got[i]!.equals(file.subarray(r.offset, r.offset + r.length)), `request ${i}`);
    }
  } finally {
    await close();
  }
});

/** Counts extent walks. */
class Walks extends ImageWrapper {
  walks = 0;
  override extents(offset?: number, length?: number) {
    this.walks++;
    return super.extents(offset, length);
  }
}

test('READs after a BLOCK_STATUS of their range use its extents: no second walk', async () => {
  const path = makeRaw('status.raw');
  const file = readFileSync(path);
  const image = new Walks(await openImage(path));
  const server = await startNbdServer(image, { port: 0, log: () => {} });
  const s = await RawSession.open(server.address.transport === 'tcp' ? server.address.port : 0);
  try {
    await s.negotiate({ structured: true, allocation: true });
    s.request(P.CMD_BLOCK_STATUS, 0, 8 * MiB, 100n);
    await s.chunk();
    assert.equal(image.walks, 1);
    // Data, the hole after it, and data again: holes come from the remembered extents.
    const reqs = adjacent(768 * KiB, 10, 256 * KiB);
    await readAllAndCompare(s, reqs, file);
    assert.equal(image.walks, 1, 'the READs walked the extents again');
  } finally {
    s.close();
    await server.close();
    await image.close();
  }
});
