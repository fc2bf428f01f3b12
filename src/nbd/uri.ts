/**
 * NBD URIs (NetworkBlockDevice/nbd doc/uri.md): `nbd://host[:port]/[export]` and
 * `nbd+unix:///[export]?socket=PATH`. TLS schemes (nbds, nbds+unix) are not supported.
 */
import { UsageError } from '../errors.js';
import { NBD_DEFAULT_PORT } from './protocol.js';

export type NbdAddress =
  | { transport: 'tcp'; host: string; port: number; exportName: string }
  | { transport: 'unix'; socket: string; exportName: string };

export function parseNbdUri(spec: string): NbdAddress {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new UsageError(`invalid NBD URI '${spec}'`);
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  let exportName: string;
  try {
    exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    throw new UsageError(`invalid export name in '${spec}'`);
  }
  if (scheme === 'nbd') {
    for (const key of url.searchParams.keys()) {
      throw new UsageError(`unsupported query parameter '${key}' in NBD URI '${spec}'`);
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!host) throw new UsageError(`NBD URI '${spec}' has no host`);
    return {
      transport: 'tcp',
      host,
      port: url.port ? Number(url.port) : NBD_DEFAULT_PORT,
      exportName,
    };
  }
  if (scheme === 'nbd+unix') {
    if (url.host) throw new UsageError(`nbd+unix URI '${spec}' must not name a host`);
    let socket: string | null = null;
    for (const [key, value] of url.searchParams) {
      if (key !== 'socket') {
        throw new UsageError(`unsupported query parameter '${key}' in NBD URI '${spec}'`);
      }
      socket = value;
    }
    if (!socket) throw new UsageError(`nbd+unix URI '${spec}' needs ?socket=PATH`);
    return { transport: 'unix', socket, exportName };
  }
  if (scheme === 'nbds' || scheme === 'nbds+unix') {
    throw new UsageError(`${scheme}:// needs TLS, which diskpipe does not support`);
  }
  throw new UsageError(`'${spec}' is not an NBD URI`);
}

/** Percent-encodes all but unreserved characters and '/' (paths, socket names). */
function encodePath(s: string): string {
  return encodeURIComponent(s).replace(/%2F/g, '/');
}

export function formatNbdUri(a: NbdAddress): string {
  if (a.transport === 'unix') {
    return `nbd+unix:///${encodePath(a.exportName)}?socket=${encodePath(a.socket)}`;
  }
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `nbd://${host}:${a.port}/${encodePath(a.exportName)}`;
}
