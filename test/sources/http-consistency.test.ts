/**
 * A resource without ETag/Last-Modified: every answer's Content-Range total and
 * Content-Length are checked, so a change of size or a confused server is a clear error.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, test } from 'node:test';
import { HttpSource } from '../../src/sources/http.js';

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
