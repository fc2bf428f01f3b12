/**
 * `diskpipe serve` against real NBD clients: qemu-img (info, map, convert, compare), nbdinfo
 * (--json, --map), nbdcopy, qemu-io; and the CLI contract (URI on stdout, --once, signals).
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { collectExtents } from '../../src/image/extents.js';
import { openImage } from '../../src/open.js';
import { zeroRuns } from '../helpers/extents.js';
import { diskpipe, qemuImg, qemuIo, qemuMap, run, sparseFile, tempDir } from '../helpers/peers.js';
import { exitOf, startServe } from './helpers.js';

const dir = tempDir();
const SIZE = 24 * 1024 * 1024;

function makeRaw(name: string, size = SIZE): string {
  const path = sparseFile(join(dir, name), size);
  const fd = openSync(path, 'r+');
  const data = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + 1) & 0xff;
  const put = (length: number, at: number) => {
    if (at + length <= size) writeSync(fd, data, 0, length, at);
  };
  put(data.length, 2 * 1024 * 1024);
  put(65536, 10 * 1024 * 1024 + 4096);
  put(512, size - 512);
  closeSync(fd);
  return path;
}

type Run = [number, number, boolean];

/** Zero runs of an image as diskpipe opens it locally (the reference for every peer). */
async function localRuns(path: string): Promise<Run[]> {
  const image = await openImage(path);
  const ext = await collectExtents(image.extents());
  await image.close();
  return zeroRuns(ext.map((e) => ({ start: e.offset, length: e.length, zero: e.zero })));
}

/** `nbdinfo --map` lines: offset, length, type, description. */
async function nbdinfoRuns(uri: string): Promise<Run[]> {
  const out = await run('nbdinfo', ['--map', uri]);
  const entries = out
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .map(([start, length, type]) => ({
      start: Number(start),
      length: Number(length),
      zero: (Number(type) & 2) !== 0,
    }));
  return zeroRuns(entries);
}

test('raw image: qemu-img, nbdinfo and nbdcopy see the right size, extents and bytes', async () => {
  const path = makeRaw('a.raw');
  const server = await startServe(['--port', '0', path]);
  try {
    assert.match(server.uri, /^nbd:\/\/127\.0\.0\.1:\d+\/$/);
    const info = JSON.parse(await qemuImg('info', '--output=json', server.uri));
    assert.equal(info['virtual-size'], SIZE);
    assert.equal(info.format, 'raw');
    const theirs = (await qemuMap(server.uri, 'raw')).map((e) => ({ ...e }));
    assert.deepEqual(zeroRuns(theirs), await localRuns(path));
    assert.deepEqual(await nbdinfoRuns(server.uri), await localRuns(path));

    const json = JSON.parse(await run('nbdinfo', ['--json', server.uri]));
    const exp = json.exports[0];
    assert.equal(exp['export-size'], SIZE);
    assert.equal(exp.is_read_only, true);
    assert.equal(exp.can_multi_conn, true);
    assert.deepEqual(exp.contexts, ['base:allocation']);
    assert.equal(json.structured, true);

    await qemuImg('compare', '-f', 'raw', '-F', 'raw', path, server.uri);
    const converted = join(dir, 'converted.qcow2');
    await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', server.uri, converted);
    await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', path, converted);

    const copy = join(dir, 'copy.raw');
    sparseFile(copy, 0);
    await run('nbdcopy', [server.uri, copy]);
    assert.ok(readFileSync(copy).equals(readFileSync(path)));
    // Sparse: about the 1.1 MiB of data, not 24 MiB.
    assert.ok(
      statSync(copy).blocks * 512 < 4 * 1024 * 1024,
      `copy allocates ${statSync(copy).blocks * 512}`,
    );
  } finally {
    await server.stop();
  }
});

test('odd-sized raw image: nbdinfo reports the exact size', async () => {
  const path = makeRaw('odd.raw', 3 * 1024 * 1024 + 1000);
  const server = await startServe(['--once', '--port', '0', path]);
  const json = JSON.parse(await run('nbdinfo', ['--json', server.uri]));
  assert.equal(json.exports[0]['export-size'], 3 * 1024 * 1024 + 1000);
  assert.equal(await exitOf(server), 0, '--once exits 0 after the last client');
});

test('qcow2 image is served as its guest bytes', async () => {
  const path = join(dir, 'b.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '32M');
  await qemuIo(
    path,
    ['write -P 0x61 0 1M', 'write -z 4M 1M', 'write -P 0x62 9M 64k', 'write -P 0x63 31M 512'],
    'qcow2',
  );
  const server = await startServe(['--port', '0', path]);
  try {
    await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', path, server.uri);
    const theirs = zeroRuns(await qemuMap(path, 'qcow2'));
    assert.deepEqual(zeroRuns(await qemuMap(server.uri, 'raw')), theirs);
    assert.deepEqual(await nbdinfoRuns(server.uri), theirs);
    const copy = join(dir, 'b-copy.raw');
    await run('nbdcopy', [server.uri, copy]);
    const expected = join(dir, 'b-expected.raw');
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', path, expected);
    assert.ok(readFileSync(copy).equals(readFileSync(expected)));
  } finally {
    await server.stop();
  }
});

test('--writable writes through to a raw file; read-only refuses; --overlay keeps it unchanged', async () => {
  const path = makeRaw('w.raw');
  const before = readFileSync(path);
  const sock = join(dir, 'w.sock');

  const ro = await startServe(['--socket', sock, path]);
  assert.equal(ro.uri, `nbd+unix:///?socket=${sock}`);
  await assert.rejects(qemuIo(ro.uri, ['write -P 0x77 0 4096'], 'raw'));
  await ro.stop();
  assert.equal(existsSync(sock), false, 'socket file left behind');

  const ov = await startServe(['--overlay', '--socket', sock, '--export', 'disk', path]);
  assert.equal(ov.uri, `nbd+unix:///disk?socket=${sock}`);
  await qemuIo(ov.uri, ['write -P 0x77 0 4096', 'write -z 2M 1M'], 'raw');
  await qemuIo(ov.uri, ['read -P 0x77 0 4096', 'read -P 0 2M 1M'], 'raw');
  await ov.stop();
  assert.ok(readFileSync(path).equals(before), '--overlay modified the image');

  const rw = await startServe(['--writable', '--socket', sock, path]);
  await qemuIo(rw.uri, ['write -P 0x78 8k 4096', 'flush'], 'raw');
  await rw.stop();
  const after = readFileSync(path);
  assert.ok(after.subarray(8192, 12288).every((b) => b === 0x78));
  assert.ok(after.subarray(0, 8192).equals(before.subarray(0, 8192)));
});

test('serve: SIGINT exits 130 and removes the socket; usage errors exit 2; non-loopback warns', async () => {
  const path = makeRaw('s.raw', 1024 * 1024);
  const sock = join(dir, 's.sock');
  const server = await startServe(['--socket', sock, path]);
  server.proc.kill('SIGINT');
  assert.equal(await exitOf(server), 130);
  assert.equal(existsSync(sock), false);

  const both = diskpipe(['serve', '--writable', '--overlay', path]);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /^diskpipe: .*exclude/);
  const missing = diskpipe(['serve', '--port', '0', join(dir, 'missing.raw')]);
  assert.equal(missing.status, 2);
  const badPort = diskpipe(['serve', '--port', 'x', path]);
  assert.equal(badPort.status, 2);
  assert.match(badPort.stderr, /--port must be a whole number/);

  const open = await startServe(['--bind', '0.0.0.0', '--port', '0', '--once', path]);
  assert.match(open.uri, /^nbd:\/\/0\.0\.0\.0:\d+\/$/);
  await run('nbdinfo', ['--size', open.uri.replace('0.0.0.0', '127.0.0.1')]);
  assert.equal(await exitOf(open), 0);
  assert.match(open.stderr(), /warning: serving on 0\.0\.0\.0 without TLS/);
});
