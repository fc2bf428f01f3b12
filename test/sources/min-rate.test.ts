/**
 * A minimum transfer rate for HTTP range reads and downloads, and a largest download: servers
 * that drip bytes (headers or body) or send without end get a clear error. Limits are tiny
 * (1 KiB/s over 1 s) so the tests end soon; nothing here measures time.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { download } from '../../src/cache/download.js';
import { HttpSource } from '../../src/sources/http.js';
import { diskpipeAsync, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const SIZE = 1 << 20;

type Mode = 'drip-body' | 'drip-headers' | 'endless' | 'huge';

/** A raw HTTP server: drips one byte every 100 ms after (or within) the headers, or never ends. */
async function misbehave(mode: Mode): Promise<{ url: string; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('data', (request: Buffer) => {
      const range = /range: bytes=(\d+)-(\d+)/i.exec(request.toString());
      const length = range ? Number(range[2]) - Number(range[1]) + 1 : SIZE;
      const head =
        mode === 'endless'
          ? 'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n'
          : range
            ? `HTTP/1.1 206 Partial Content\r\ncontent-range: bytes ${range[1]}-${range[2]}/${SIZE}\r\ncontent-length: ${length}\r\n\r\n`
            : `HTTP/1.1 200 OK\r\ncontent-length: ${SIZE}\r\n\r\n`;
      if (mode === 'huge') {
        // A length no filesystem here has room for; the body never comes.
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${2 ** 50}\r\n\r\n`);
        return;
      }
      if (mode === 'endless') {
        socket.write(head);
        const block = Buffer.alloc(64 * 1024, 0x41);
        const pump = () => {
          while (!socket.destroyed && socket.write(block));
          if (!socket.destroyed) socket.once('drain', pump);
        };
        pump();
        return;
      }
      const bytes = Buffer.from(mode === 'drip-headers' ? head : `${head}${'x'.repeat(length)}`);
      let at = mode === 'drip-headers' ? 0 : head.length;
      if (at > 0) socket.write(bytes.subarray(0, at));
      const timer = setInterval(() => {
        if (socket.destroyed || at >= bytes.length) return void clearInterval(timer);
        socket.write(bytes.subarray(at, at + 1));
        at++;
      }, 100);
      socket.on('close', () => clearInterval(timer));
    });
  });
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${port}/disk.raw`, server };
}

const limits = { minRate: 1024, minRateWindowMs: 1000 };
const SLOW = /transfer slower than 1024 bytes\/s over 1 s/;

for (const mode of ['drip-body', 'drip-headers'] as const) {
  test(`min rate: an HTTP range read from a server that drips (${mode}) fails`, async () => {
    const { url } = await misbehave(mode);
    await assert.rejects(HttpSource.open(url, { ...limits, retries: 0 }), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'HTTP');
      assert.match(err.message, SLOW);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
  });
}

test('min rate: the CLI takes --min-rate and --min-rate-window', async () => {
  const { url } = await misbehave('drip-body');
  const r = await diskpipeAsync(['info', '--min-rate', '1K', '--min-rate-window', '1', url]).done;
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: .*transfer slower than 1024 bytes\/s over 1 s/);
  assert.doesNotMatch(r.stderr, /secret/);
});

test('min rate: a download from a server that drips fails and keeps its part to resume', async () => {
  const { url } = await misbehave('drip-body');
  const partPath = join(dir, 'drip.part');
  await assert.rejects(download({ url, partPath, retries: 0, limits }), (err: Error) => {
    assert.match(err.message, SLOW);
    assert.doesNotMatch(err.message, /secret/);
    return true;
  });
});

test('max download: an endless body stops at the limit and drops its part', async () => {
  const { url } = await misbehave('endless');
  const partPath = join(dir, 'endless.part');
  await assert.rejects(
    download({ url, partPath, retries: 0, limits: { maxDownload: 4 << 20 } }),
    /download stopped at the limit of 4194304 bytes/,
  );
  assert.equal(existsSync(partPath), false);
  assert.equal(existsSync(`${partPath}.json`), false);
});

test('max download: a known length over the limit is refused before any byte', async () => {
  const { url } = await misbehave('drip-body');
  const cache = join(dir, 'cache');
  const r = await diskpipeAsync(['pull', '--cache-dir', cache, '--max-download', '512K', url]).done;
  assert.equal(r.status, 2);
  assert.match(
    r.stderr,
    /^diskpipe: .*download of 1048576 bytes exceeds the limit of 524288 bytes/,
  );
});

test('max download: by default a known length must fit in the free space', async () => {
  const { url } = await misbehave('huge');
  const partPath = join(dir, 'huge.part');
  await assert.rejects(download({ url, partPath, retries: 0 }), (err: Error) => {
    assert.match(
      err.message,
      /download of 1125899906842624 bytes does not fit in the \d+ bytes free/,
    );
    return true;
  });
  assert.equal(existsSync(partPath), false);
});
