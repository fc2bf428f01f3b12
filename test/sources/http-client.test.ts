/**
 * The one HTTP client under range reads and downloads: AbortSignal cancels a request, a body
 * and a retry wait; redirects are limited; both users retry with the same policy.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { download } from '../../src/cache/download.js';
import { HttpSource } from '../../src/sources/http.js';
import { bodyChunks } from '../../src/sources/http-body.js';
import { HttpClient } from '../../src/sources/http-client.js';
import { startServer } from '../helpers/http-server.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir();
const file = join(dir, 'disk.raw');
writeFileSync(file, Buffer.alloc(8 << 20, 0x61));
const server = await startServer();
server.files.set('disk.raw', { path: file });
after(() => server.close());

test('http client: an AbortSignal stops a download mid-body; the part is kept to resume', async () => {
  let go: () => void = () => {};
  server.behaviour.pauseAt = 1 << 20;
  server.behaviour.resume = new Promise<void>((r) => {
    go = r;
  });
  const controller = new AbortController();
  const partPath = join(dir, 'aborted.part');
  const p = download({
    url: server.url('disk.raw'),
    partPath,
    signal: controller.signal,
    // The first 1 MiB is on disk: abort then (an event, not a time).
    onPersisted: (position) => {
      if (position >= 1 << 20) controller.abort();
    },
  });
  await assert.rejects(p, { code: 'ABORTED', message: /disk\.raw: aborted/ });
  go();
  server.behaviour.pauseAt = undefined;
  server.behaviour.resume = undefined;
  assert.ok(existsSync(partPath) && statSync(partPath).size >= 1 << 20);
  const r = await download({ url: server.url('disk.raw'), partPath });
  assert.ok(r.resumedFrom >= 1 << 20, `resumed from ${r.resumedFrom}`);
  assert.equal(r.size, 8 << 20);
});

test('http client: an aborted signal fails range reads at once, and a retry wait', async () => {
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(HttpSource.open(server.url('disk.raw'), { signal: controller.signal }), {
    code: 'ABORTED',
  });
  // A 503 is retried after a wait of about 60 s: the abort ends the wait, not the timer.
  server.behaviour.status = 503;
  const waiting = new AbortController();
  const requests = server.log.length;
  const p = HttpSource.open(server.url('disk.raw'), {
    signal: waiting.signal,
    retries: 3,
    retryDelayMs: 60_000,
  });
  const seen = setInterval(() => {
    if (server.log.length > requests) {
      clearInterval(seen);
      waiting.abort();
    }
  }, 5);
  await assert.rejects(p, { code: 'ABORTED' });
  server.behaviour.status = undefined;
  assert.equal(server.log.length, requests + 1, 'no retry after the abort');
});

test('http client: redirects are followed up to 5 hops; a loop is a clear error', async () => {
  let hops = 0;
  const loop = http.createServer((req, res) => {
    hops++;
    const n = Number(req.url?.slice(1) ?? 0);
    res.writeHead(302, { location: `/${n + 1}` }).end();
  });
  await new Promise<void>((r) => loop.listen(0, '127.0.0.1', r));
  after(() => {
    loop.closeAllConnections();
    loop.close();
  });
  const base = `http://user:secret@127.0.0.1:${(loop.address() as { port: number }).port}`;
  await assert.rejects(
    download({ url: `${base}/0`, partPath: join(dir, 'loop.part') }),
    (err: Error) => {
      assert.match(err.message, /\/5: too many redirects$/);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    },
  );
  assert.equal(hops, 6, 'the first request and 5 redirects, no retry');
  const client = new HttpClient(`${server.url('disk.raw')}`);
  const res = await client.request({ range: [0, 10] });
  assert.equal(res.status, 206);
  const chunks: Buffer[] = [];
  for await (const c of bodyChunks(res, client.label)) chunks.push(c);
  assert.equal(Buffer.concat(chunks).toString(), 'a'.repeat(10));
  client.close();
});

test('http client: a bad option is a usage error, not a hang', () => {
  assert.throws(() => new HttpClient('http://127.0.0.1/', { timeoutMs: 0 }), { code: 'USAGE' });
  assert.throws(() => new HttpClient('ftp://127.0.0.1/'), { code: 'USAGE' });
  assert.throws(() => new HttpClient('not a url'), { code: 'USAGE' });
});
