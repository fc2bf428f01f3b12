/**
 * A small real HTTP server on 127.0.0.1 for tests and benchmarks: serves files with or
 * without Range support and can misbehave on purpose (fail, drop connections, stall).
 */
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServeOptions {
  /** Honour Range requests (default true). */
  ranges?: boolean;
  /** Answer HEAD requests (default true; false: 405). */
  head?: boolean;
  /** A status to answer GET request number `n` (from 1) with instead of the data. */
  fail?: (n: number) => number | undefined;
  /** Send only this many body bytes for GET request number `n`, then cut the connection. */
  drop?: (n: number) => number | undefined;
  /** Never answer GET requests (to test timeouts). */
  stall?: boolean;
  /** Paths redirected (302) to another path. */
  redirects?: Record<string, string>;
  /** An ETag per request number (to simulate a change on the server). */
  etag?: (request: number) => string | undefined;
}

export interface LoggedRequest {
  method: string;
  path: string;
  range: string | undefined;
}

export interface TestServer {
  url(path: string): string;
  readonly log: LoggedRequest[];
  close(): Promise<void>;
}

/** Serves `files` (URL path → local file) on an ephemeral port of 127.0.0.1. */
export async function serveFiles(
  files: Record<string, string>,
  opts: ServeOptions = {},
): Promise<TestServer> {
  const log: LoggedRequest[] = [];
  let gets = 0;
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    log.push({ method: req.method ?? '', path, range: req.headers.range });
    const target = opts.redirects?.[path];
    if (target) {
      res.writeHead(302, { location: target }).end();
      return;
    }
    const file = files[path];
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    if (req.method === 'HEAD' && opts.head === false) {
      res.writeHead(405).end();
      return;
    }
    if (req.method === 'GET') {
      gets++;
      if (opts.stall) return;
      const status = opts.fail?.(gets);
      if (status !== undefined) {
        res.writeHead(status).end('failing on purpose');
        return;
      }
    }
    const size = statSync(file).size;
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
    const etag = opts.etag?.(gets);
    if (etag) headers.etag = etag;
    if (opts.ranges !== false) headers['accept-ranges'] = 'bytes';
    let start = 0;
    let end = size; // exclusive
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m && opts.ranges !== false) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]) + 1, size) : size;
      if (start >= size) {
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
    }
    headers['content-length'] = end - start;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || end === start) {
      res.end();
      return;
    }
    const dropAfter = req.method === 'GET' ? opts.drop?.(gets) : undefined;
    const drop = dropAfter !== undefined;
    const limit = drop ? Math.min(end, start + dropAfter) : end;
    const stream = createReadStream(file, { start, end: limit - 1 });
    if (limit === start) {
      res.flushHeaders();
      res.socket?.destroy();
      return;
    }
    stream.pipe(res, { end: !drop });
    if (drop) stream.on('end', () => res.socket?.destroy());
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
