/**
 * An NBD server for one Image: `startNbdServer(image, opts)` listens on TCP or a Unix socket and
 * serves the image to several clients at once until `close()` (or, with `once`, until the last
 * client leaves). Read-only unless `writable` is set; the caller owns the image (wrap it in a
 * CowImage for a throwaway overlay) and closes it after the server.
 */
import { existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { DiskpipeError, ioError, NotCapableError, UsageError } from '../../errors.js';
import type { Image } from '../../image/types.js';
import { BufferPool } from '../buffer-pool.js';
import { DEFAULT_MAX_PAYLOAD } from '../protocol.js';
import { formatNbdUri, type NbdAddress } from '../uri.js';
import { ConnectionClosedError, WireReader } from '../wire.js';
import { messageOf, type ServedExport } from './export.js';
import { serverHandshake } from './handshake.js';
import { emptyStats, type NbdServerStats } from './stats.js';
import { after } from './timer.js';
import { Transmission, type TransmissionLimits } from './transmission.js';

export type { NbdServerStats } from './stats.js';

export interface NbdServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  bind?: string;
  /** TCP port (default 10809; 0 picks a free one). */
  port?: number;
  /** Listen on this Unix socket path instead of TCP. */
  socket?: string;
  /** Export name (default ""). */
  exportName?: string;
  /** Accept writes (the image must be writable). Default: read-only, writes fail with EPERM. */
  writable?: boolean;
  /** Most clients connected at once (default 16); more are refused. */
  shared?: number;
  /** Stop when the last client disconnects. */
  once?: boolean;
  /** Bytes one connection may hold in flight (payloads and replies); default 64 MiB. */
  maxBytesPerConnection?: number;
  /** Requests one connection may have in flight; default 64. */
  maxRequestsPerConnection?: number;
  /**
   * Bytes of READ replies one connection reads ahead of its socket (default 4 MiB). Data read
   * just before it is sent is still in the CPU cache when the socket copies it; reading far
   * ahead costs both copies a trip to memory.
   */
  readAheadPerConnection?: number;
  /**
   * Seconds a client may take to finish the handshake (default 10); a stalled client is then
   * disconnected, so it cannot hold one of the `shared` slots.
   */
  handshakeTimeout?: number;
  /**
   * Seconds a connection may stay without a request after the handshake before the server
   * closes it (default: never; an idle VM disk must stay connected). A request in flight,
   * however slow, is not idleness.
   */
  idleTimeout?: number;
  /** Where diagnostics go (default: stderr, prefixed "diskpipe serve: "). */
  log?: (message: string) => void;
}

export interface NbdServer {
  /** The URI clients connect to (real port when `port: 0`). */
  readonly uri: string;
  readonly address: NbdAddress;
  /** Resolves when the server has stopped (close(), or the last client left with `once`). */
  readonly done: Promise<void>;
  /** Clients connected now. */
  readonly clients: number;
  /** Counters since the start (a live view). */
  readonly stats: Readonly<NbdServerStats>;
  /** Stops listening, disconnects clients and waits for their requests to finish. */
  close(): Promise<void>;
}

export async function startNbdServer(
  image: Image,
  opts: NbdServerOptions = {},
): Promise<NbdServer> {
  const writable = opts.writable ?? false;
  if (writable && !image.capabilities.write) {
    throw new NotCapableError(`${image.format} image cannot be written; serve it with an overlay`);
  }
  const shared = opts.shared ?? 16;
  if (!Number.isInteger(shared) || shared < 1) throw new UsageError('shared must be at least 1');
  const exp: ServedExport = {
    image,
    name: opts.exportName ?? '',
    writable,
    maxPayload: DEFAULT_MAX_PAYLOAD,
  };
  const log = opts.log ?? (() => {});
  const limits: TransmissionLimits = {
    maxRequests: opts.maxRequestsPerConnection ?? 64,
    maxBytes: opts.maxBytesPerConnection ?? 2 * DEFAULT_MAX_PAYLOAD,
    readAhead: opts.readAheadPerConnection ?? 4 * 1024 * 1024,
    idleTimeout: seconds(opts.idleTimeout ?? 0, 'idleTimeout') * 1000,
  };
  const handshakeMs = seconds(opts.handshakeTimeout ?? 10, 'handshakeTimeout') * 1000;
  if (handshakeMs === 0) throw new UsageError('handshakeTimeout must be above 0');
  const pool = new BufferPool();
  const stats = emptyStats();

  const sockets = new Set<Socket>();
  const sessions = new Set<Promise<void>>();
  let everConnected = false;
  let closing: Promise<void> | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });

  const server = createServer((socket) => {
    everConnected = true;
    stats.connections++;
    sockets.add(socket);
    const session = serveConnection(socket, exp, log, limits, handshakeMs, pool, stats);
    sessions.add(session);
    session.finally(() => {
      sessions.delete(session);
      sockets.delete(socket);
      if (opts.once && sockets.size === 0 && everConnected) void close();
    });
  });
  server.maxConnections = shared;
  server.on('drop', (d) =>
    log(`refused a client from ${d?.remoteAddress ?? 'local socket'}: ${shared} already connected`),
  );

  const address = await listen(server, opts, exp.name);

  function close(): Promise<void> {
    closing ??= (async () => {
      // server.close() waits for open connections, so end them after it stops accepting.
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await Promise.allSettled([...sessions]);
      await stopped;
      resolveDone();
    })();
    return closing;
  }

  return {
    uri: formatNbdUri(address),
    address,
    done,
    get clients() {
      return sockets.size;
    },
    stats,
    close,
  };
}

/** A timeout option in seconds: a finite number ≥ 0. */
function seconds(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new UsageError(`${name} must be a number of seconds ≥ 0`);
  }
  return value;
}

async function listen(
  server: Server,
  opts: NbdServerOptions,
  exportName: string,
): Promise<NbdAddress> {
  if (opts.socket !== undefined) {
    // Never remove a path we did not create: a stale socket is the user's to delete.
    if (existsSync(opts.socket)) throw new UsageError(`${opts.socket} already exists`);
    await listenOn(server, { path: opts.socket }, opts.socket);
    return { transport: 'unix', socket: opts.socket, exportName };
  }
  const host = opts.bind ?? '127.0.0.1';
  const port = opts.port ?? 10809;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`invalid port ${port}`);
  await listenOn(server, { host, port }, `${host}:${port}`);
  const bound = server.address();
  const realPort = typeof bound === 'object' && bound ? bound.port : port;
  return { transport: 'tcp', host, port: realPort, exportName };
}

function listenOn(
  server: Server,
  where: { path: string } | { host: string; port: number },
  what: string,
) {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(ioError(err, `cannot listen on ${what}`));
    server.once('error', onError);
    server.listen(where, () => {
      server.off('error', onError);
      server.on('error', () => {}); // errors after listen arrive per connection
      resolve();
    });
  });
}

/** One client: handshake, then transmission; every failure is logged, never thrown. */
async function serveConnection(
  socket: Socket,
  exp: ServedExport,
  log: (m: string) => void,
  limits: TransmissionLimits,
  handshakeMs: number,
  pool: BufferPool,
  stats: NbdServerStats,
): Promise<void> {
  const peer = socket.remoteAddress
    ? `${socket.remoteAddress}:${socket.remotePort}`
    : 'local client';
  const say = (m: string) => log(`${peer}: ${m}`);
  socket.setNoDelay(true);
  const reader = new WireReader(socket);
  const cancelTimer = after(handshakeMs, () => {
    stats.handshakeTimeouts++;
    say('handshake timed out');
    socket.destroy();
  });
  try {
    const negotiated = await serverHandshake(socket, reader, exp);
    cancelTimer();
    if (!negotiated) return;
    await new Transmission(socket, reader, exp, negotiated, say, limits, pool, stats).run();
  } catch (err) {
    if (!(err instanceof ConnectionClosedError)) {
      say(`${err instanceof DiskpipeError ? '' : 'internal error: '}${messageOf(err)}; closing`);
    }
  } finally {
    cancelTimer();
    if (!socket.destroyed) {
      socket.end(() => socket.destroy());
      // A peer that stops reading must not keep the connection half-closed forever.
      setTimeout(() => socket.destroy(), 5000).unref();
    }
    await new Promise<void>((resolve) => {
      if (socket.closed) resolve();
      else socket.once('close', () => resolve());
    });
  }
}
