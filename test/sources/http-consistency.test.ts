/**
 * A resource without ETag/Last-Modified: every answer's Content-Range total and
 * Content-Length are checked, so a change of size or a confused server is a clear error; and
 * info, convert and checksum say that consistency across requests cannot be guaranteed.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HttpSource } from '../../src/sources/http.js';
import { startServer, type TestServer } from '../helpers/http-server.js';
import { diskpipeAsync, tempDir } from '../helpers/peers.js';

type Answer = (n: number, start: number, end: number) => { total: number; length?: number };

async function serve(answer: Answer): Promise<string> {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const start = Number(m?.[1] ?? 0);
    const a = answer(n, start, Number(m?.[2] ?? 0));
    const end = Math.min(Number(m?.[2] ?? 0), a.total - 1);
    const body = Buffer.alloc(end - start + 1, 0x61);
    const length = a.length ?? body.length;
    res.writeHead(206, {
      'content-range': `bytes ${start}-${end}/${a.total}`,
      'content-length': length,
    });
    res.end(body.subarray(0, Math.min(length, body.length)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/disk.raw`;
}

const opts = { blockSize: 65536, retries: 0 };

test('http consistency: a total that changes between answers is an error', async () => {
  const url = await serve((n) => ({ total: n === 1 ? 1 << 20 : (1 << 20) + 512 }));
  const source = await HttpSource.open(url, opts);
  await assert.rejects(source.read(new Uint8Array(10), 500_000), {
    code: 'HTTP',
    message: /changed size on the server \(1048576 → 1049088 bytes\)/,
  });
  await source.close();
});

test('http consistency: a Content-Length that disagrees with Content-Range is an error', async () => {
  const url = await serve((n) => ({ total: 1 << 20, ...(n > 1 ? { length: 100 } : {}) }));
  const source = await HttpSource.open(url, opts);
  await assert.rejects(source.read(new Uint8Array(10), 500_000), {
    code: 'HTTP',
    message: /Content-Length 100 for a range of 65536 bytes/,
  });
  await source.close();
});

/** The same 1 MiB raw served without validators, with a strong ETag, and with Last-Modified. */
async function servedThreeWays(): Promise<TestServer> {
  const dir = tempDir();
  const path = join(dir, 'disk.raw');
  writeFileSync(path, Buffer.alloc(1 << 20, 0x5a));
  const server = await startServer();
  server.files.set('none.raw', { path, etag: false });
  server.files.set('etag.raw', { path });
  server.files.set('modified.raw', {
    path,
    etag: false,
    lastModified: 'Mon, 07 Dec 2026 00:00:00 GMT',
  });
  after(() => server.close());
  return server;
}

const NOTICE =
  /^diskpipe: note: http:\/\/127\.0\.0\.1:\d+\/none\.raw has no ETag or Last-Modified: consistency across requests cannot be guaranteed$/m;

test('http consistency: the Content-Length of the first answer must match its range too', async () => {
  // More than the range: the body was read up to the range's end, then the server closed and
  // the error said 'connection closed after 65536 of 65536 bytes' (after its retries).
  const url = await serve((n) => ({ total: 1 << 20, ...(n === 1 ? { length: 66_536 } : {}) }));
  await assert.rejects(HttpSource.open(url, opts), {
    code: 'HTTP',
    message: /Content-Length 66536 for a range of 65536 bytes/,
  });
});

test('http consistency: a source without ETag/Last-Modified says it is unverified', async () => {
  const server = await servedThreeWays();
  const told: string[] = [];
  const onUnverified = (url: string) => told.push(url);
  for (const [name, expected] of [
    ['none.raw', 'unverified'],
    ['etag.raw', 'verified'],
    ['modified.raw', 'verified'],
  ] as const) {
    const source = await HttpSource.open(server.url(name), { onUnverified });
    assert.equal(source.consistency, expected, name);
    await source.close();
  }
  assert.deepEqual(told, [server.url('none.raw')]);
});

test('http consistency: info shows it (human and JSON), only for such sources', async () => {
  const server = await servedThreeWays();
  const none = await diskpipeAsync(['info', '--json', server.url('none.raw')]).done;
  assert.equal(none.status, 0, none.stderr);
  assert.equal(JSON.parse(none.stdout).consistency, 'unverified');
  const human = await diskpipeAsync(['info', server.url('none.raw')]).done;
  assert.match(
    human.stdout,
    /^consistency: unverified \(the server sends no ETag or Last-Modified/m,
  );
  for (const name of ['etag.raw', 'modified.raw']) {
    const r = await diskpipeAsync(['info', '--json', server.url(name)]).done;
    assert.equal(r.status, 0, r.stderr);
    assert.equal('consistency' in JSON.parse(r.stdout), false, name);
    const h = await diskpipeAsync(['info', server.url(name)]).done;
    assert.doesNotMatch(h.stdout, /consistency/, name);
  }
});

test('http consistency: convert and checksum -p print a one-line notice', async () => {
  const server = await servedThreeWays();
  const out = join(tempDir(), 'out.raw');
  const runs = [
    ['checksum', '-p', server.url('none.raw')],
    ['convert', '-p', '-O', 'raw', server.url('none.raw'), out],
  ];
  for (const args of runs) {
    const r = await diskpipeAsync(args).done;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, NOTICE, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  for (const name of ['etag.raw', 'modified.raw']) {
    const r = await diskpipeAsync(['checksum', '-p', server.url(name)]).done;
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', name);
  }
  const quiet = await diskpipeAsync(['checksum', '-q', server.url('none.raw')]).done;
  assert.equal(quiet.stderr, '');
});
