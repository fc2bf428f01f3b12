/**
 * A real HTTP server on 127.0.0.1 for download and range tests, with switchable behaviour:
 * Range support, validators, dropping the connection half-way, counting what it sent.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServedFile {
  /** Path of the file on disk whose bytes are served (re-read on each request). */
  path: string;
  etag?: boolean;
  lastModified?: string;
  /** Send a whole-file answer without Content-Length (chunked), so its size is unknown. */
  noLength?: boolean;
}

export interface ServerBehaviour {
  ranges: boolean;
  /** Close the connection after sending this many body bytes (once per request while set). */
  dropAfter?: number | undefined;
  /** Stall (send nothing more) after this many body bytes. */
  stallAfter?: number | undefined;
  /** Answer every request with this status. */
  status?: number | undefined;
  /** Send at most this many body bytes per second (so a kill can land mid-download). */
  bytesPerSecond?: number | undefined;
  /**
   * Pause each answer after this many body bytes until `resume` settles, then send the rest:
   * a test decides by events, not by time, what happens while a download is half done.
   */
  pauseAt?: number | undefined;
  resume?: Promise<void> | undefined;
}

export interface TestServer {
  url(name: string): string;
  files: Map<string, ServedFile>;
  behaviour: ServerBehaviour;
  /** Requests seen, with their Range header and the body bytes sent. */
  log: { method: string; path: string; range?: string | undefined; sent: number; status: number }[];
  bytesSent(): number;
  close(): Promise<void>;
}

export async function startServer(behaviour: Partial<ServerBehaviour> = {}): Promise<TestServer> {
  const files = new Map<string, ServedFile>();
  const state: ServerBehaviour = { ranges: true, ...behaviour };
  const log: TestServer['log'] = [];
  const server: Server = createServer((req, res) => handle(req, res, files, state, log));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    files,
    behaviour: state,
    log,
    bytesSent: () => log.reduce((n, e) => n + e.sent, 0),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function handle(
  req: IncomingMessage,
  res: ServerResponse,
  files: Map<string, ServedFile>,
  state: ServerBehaviour,
  log: TestServer['log'],
): void {
  const entry = {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    range: req.headers.range,
    sent: 0,
    status: 200,
  };
  log.push(entry);
  const file = files.get((req.url ?? '/').slice(1));
  const finish = (status: number, headers: Record<string, string | number> = {}, body?: Buffer) => {
    entry.status = status;
    res.writeHead(status, headers);
    if (!body || req.method === 'HEAD') return void res.end();
    send(res, body, state, entry);
  };
  if (state.status) return finish(state.status);
  if (!file) return finish(404);
  const data = readFileSync(file.path);
  const etag =
    file.etag === false ? undefined : `"${createHash('sha1').update(data).digest('hex')}"`;
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
  if (etag) headers.etag = etag;
  if (file.lastModified) headers['last-modified'] = file.lastModified;
  if (state.ranges) headers['accept-ranges'] = 'bytes';
  const validator = etag ?? file.lastModified;
  if (
    validator &&
    (req.headers['if-none-match'] === validator || req.headers['if-modified-since'] === validator)
  ) {
    return finish(304, headers);
  }
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const ifRange = req.headers['if-range'];
  if (state.ranges && range && (!ifRange || ifRange === validator)) {
    const start = Number(range[1]);
    const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
    if (start >= data.length) return finish(416, { 'content-range': `bytes */${data.length}` });
    const body = data.subarray(start, end + 1);
    return finish(
      206,
      {
        ...headers,
        'content-range': `bytes ${start}-${end}/${data.length}`,
        'content-length': body.length,
      },
      body,
    );
  }
  finish(200, file.noLength ? headers : { ...headers, 'content-length': data.length }, data);
}

function send(
  res: ServerResponse,
  body: Buffer,
  state: ServerBehaviour,
  entry: { sent: number },
): void {
  const limit = state.dropAfter ?? state.stallAfter;
  const chunk = 64 * 1024;
  let pos = 0;
  const pace = state.bytesPerSecond;
  const { pauseAt, resume } = state;
  let paused = pauseAt === undefined || resume === undefined;
  const pump = () => {
    while (pos < body.length) {
      if (res.destroyed) return;
      if (limit !== undefined && pos >= limit) {
        if (state.dropAfter !== undefined) res.destroy();
        return; // stall: keep the socket open, send nothing more
      }
      if (!paused && pos >= pauseAt!) {
        paused = true;
        return void resume!.then(pump);
      }
      const start = pos;
      const end = Math.min(
        pos + chunk,
        body.length,
        limit ?? body.length,
        paused ? body.length : pauseAt!,
      );
      const ok = res.write(body.subarray(pos, end));
      entry.sent += end - pos;
      pos = end;
      if (pace) return void setTimeout(pump, ((end - start) / pace) * 1000);
      if (!ok) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}
