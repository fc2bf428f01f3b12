/**
 * Records the nbd-client target's seeds into test/fuzz/corpus/nbd-client/: what real servers
 * send to diskpipe's client while the target's exercise runs, captured by a proxy on a Unix
 * socket. Run by hand after `npx tsc -p .`: `node dist/test/fuzz/guided/record-nbd.js`.
 * Sessions: qemu-nbd (structured replies, base:allocation, hole chunks), nbdkit --no-sr
 * (simple replies), nbdkit failing every read (error chunks), and the nbdkit --no-sr session
 * rewritten as from a server without fixed newstyle (the NBD_OPT_EXPORT_NAME fallback).
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../../helpers/peers.js';
import { withNbdPeer } from '../../nbd/helpers.js';
import { exercise } from '../exercise.js';
import { Rng } from '../mutate.js';
import { CORPUS_DIR, saveSeed } from './seeds.js';
import { LIMITS, NBD_RNG_SEED } from './targets.js';

const dir = tempDir('diskpipe-record-nbd-');

/** A sparse disk of `size` bytes: 4 KiB of data at size/4, 100 bytes at 3/4 (small replies). */
function smallDisk(size: number): string {
  const path = join(dir, `small-${size}.raw`);
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, size / 4);
  writeSync(fd, Buffer.from('tail data '.repeat(10)), 0, 100, (size / 4) * 3);
  ftruncateSync(fd, size);
  closeSync(fd);
  return path;
}

/** Runs the target's exercise on `socket` through a proxy; returns what the server sent. */
async function record(socket: string): Promise<Buffer> {
  const proxy = join(dir, `proxy-${Math.random().toString(36).slice(2)}.sock`);
  const sent: Buffer[] = [];
  const server = createServer((client) => {
    const upstream = createConnection(socket);
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => sent.push(Buffer.from(d)));
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(proxy, resolve));
  const o = await exercise(`nbd+unix:///?socket=${proxy}`, {}, new Rng(NBD_RNG_SEED), LIMITS);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  console.log(`  ${o.stage}${o.code ? ` ${o.code}: ${o.message}` : ''}`);
  return Buffer.concat(sent);
}

/** The handshake part of a fixed newstyle session ends with NBD_OPT_GO's ACK. */
function withoutFixedNewstyle(session: Buffer): Buffer {
  let at = 18;
  let exportInfo: Buffer | undefined;
  for (;;) {
    const option = session.readUInt32BE(at + 8);
    const type = session.readUInt32BE(at + 12);
    const length = session.readUInt32BE(at + 16);
    const data = session.subarray(at + 20, at + 20 + length);
    at += 20 + length;
    // NBD_REP_INFO with NBD_INFO_EXPORT: size (u64) and transmission flags (u16).
    if (option === 7 && type === 3 && data.readUInt16BE(0) === 0) exportInfo = data.subarray(2);
    if (option === 7 && type === 1) break;
  }
  const greeting = Buffer.from(session.subarray(0, 18));
  greeting.writeUInt16BE(0, 16); // neither fixed newstyle nor no-zeroes
  return Buffer.concat([greeting, exportInfo!, Buffer.alloc(124), session.subarray(at)]);
}

const disk = smallDisk(256 * 1024);
// Simple replies carry every byte read, zeroes too: a smaller disk keeps the seeds small.
const tiny = smallDisk(32 * 1024);
const save = (name: string, bytes: Buffer) => {
  console.log(`${saveSeed(CORPUS_DIR, 'nbd-client', name, bytes)}: ${bytes.length} bytes`);
};
await withNbdPeer('qemu-nbd', ['-f', 'raw', '-r', disk], async (uri) => {
  save('qemu-nbd', await record(new URL(uri()).searchParams.get('socket')!));
});
await withNbdPeer('nbdkit', ['-r', '--no-sr', 'file', tiny], async (uri) => {
  const simple = await record(new URL(uri()).searchParams.get('socket')!);
  save('nbdkit-simple', simple);
  save('export-name', withoutFixedNewstyle(simple));
});
const errors = ['--filter=error', 'file', disk, 'error-pread=EIO', 'error-pread-rate=100%'];
await withNbdPeer('nbdkit', ['-r', ...errors], async (uri) => {
  save('nbdkit-read-errors', await record(new URL(uri()).searchParams.get('socket')!));
});
