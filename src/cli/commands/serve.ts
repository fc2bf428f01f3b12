import { unlinkSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseDuration } from '../../cache/maintenance.js';
import { NotCapableError, UsageError } from '../../errors.js';
import { CowImage } from '../../filters/cow.js';
import { SparsifyImage } from '../../filters/sparsify/index.js';
import type { Image } from '../../image/types.js';
import { lockChainForReading } from '../../io/chain-read-locks.js';
import { setSignalCloser } from '../../io/cleanup.js';
import { startNbdServer } from '../../nbd/server/index.js';
import { openImage } from '../../open.js';
import { defineCommand } from '../command.js';
import { openOptions, print } from '../common.js';
import { flag, value } from '../options.js';
import { READ_OPTIONS, trustOptions } from '../shared-options.js';

export const serve = defineCommand({
  synopsis:
    'diskpipe serve [--bind ADDR] [--port N | --socket PATH] [--export NAME] [--writable | --overlay | --sparsify] [--shared N] [--once] [--idle-timeout DUR] [--handshake-timeout DUR] [-f FMT] [--untrusted] [--allow-backing DIR] IMAGE',
  summary: [
    'Exports IMAGE (any format diskpipe reads) over NBD and prints its URI once listening.',
    'Runs until SIGINT/SIGTERM, or with --once until the last client disconnects.',
    '',
  ],
  options: {
    bind: value('ADDR', 'address to listen on (default 127.0.0.1; others get a warning: no TLS)'),
    port: value('N', 'TCP port (default 10809; 0 picks a free one, printed in the URI)'),
    socket: value('PATH', 'listen on a Unix socket instead of TCP'),
    export: value('NAME', 'export name (default "")'),
    writable: flag('accept writes and write them to IMAGE in place (raw files, qcow2)'),
    overlay: flag('accept writes into a throwaway copy-on-write overlay; IMAGE is never changed'),
    sparsify: flag([
      'export blocks the guest filesystems mark free as zeroes (read-only;',
      'not with --writable or --overlay: a write into a free block would',
      'read back as zeroes)',
    ]),
    shared: value('N', 'most clients at once (default 16)'),
    once: flag('exit when the last client disconnects'),
    'idle-timeout': value('DUR', [
      'close a connection that sends no request for DUR (30s, 45m, 12h,',
      '30d; default: never, an idle VM disk stays connected)',
    ]),
    'handshake-timeout': value('DUR', [
      'close a client that has not finished the handshake after DUR',
      '(default 10s), so stalled clients do not hold --shared slots',
    ]),
    format: value('FMT', 'image format (no probing)', { short: 'f' }),
    ...READ_OPTIONS,
    ...trustOptions([
      'the trust rule: with --untrusted the image may not reference other files;',
      '--allow-backing DIR (repeatable): a directory backing files may live in',
    ]),
  },
  notes: ['', 'Read-only by default: writes fail with EPERM and the image is never modified.'],
  column: 19,
  operandCount: [1, 1],
  async run(values, [spec]) {
    if (values.socket !== undefined && (values.port !== undefined || values.bind !== undefined)) {
      throw new UsageError('--socket cannot be combined with --port or --bind');
    }
    if (values.writable && values.overlay) {
      throw new UsageError('--writable and --overlay exclude each other');
    }
    if (values.sparsify && (values.writable || values.overlay)) {
      throw new UsageError(
        '--sparsify is read-only: it cannot be combined with --writable or --overlay',
      );
    }
    const port = values.port === undefined ? undefined : integer(values.port, '--port', 0, 65535);
    const shared = values.shared === undefined ? 16 : integer(values.shared, '--shared', 1, 1024);
    const writable = values.writable ?? false;
    const idle = duration(values['idle-timeout'], '--idle-timeout');
    const handshake = duration(values['handshake-timeout'], '--handshake-timeout');

    const image = await openImage(spec!, { ...openOptions(values), writable });
    let served: Image = image;
    let closing: Promise<void> | undefined;
    const closeOnce = () => {
      closing ??= served.close();
      return closing;
    };
    try {
      if (writable && !image.capabilities.write) {
        throw new NotCapableError(
          `${spec} (${image.format}) cannot be written in place; use --overlay`,
        );
      }
      // Clients must not see the files change under them (qemu-nbd -r locks them the same way);
      // -U shares them as qemu-nbd -U does.
      if (values['force-share'] !== true) lockChainForReading(image, writable ? 1 : 0);
      if (values.overlay) served = new CowImage(image);
      if (values.sparsify) served = await SparsifyImage.open(image);
      const bind = values.bind ?? '127.0.0.1';
      if (values.socket === undefined && !isLoopback(bind)) {
        process.stderr.write(
          `diskpipe: warning: serving on ${bind} without TLS: anyone who can reach it can read${writable ? ' and write' : ''} the image\n`,
        );
      }
      const server = await startNbdServer(served, {
        bind,
        ...(port !== undefined ? { port } : {}),
        ...(values.socket !== undefined ? { socket: values.socket } : {}),
        exportName: values.export ?? '',
        log: (m) => process.stderr.write(`diskpipe serve: ${m}\n`),
        writable: writable || (values.overlay ?? false),
        shared,
        once: values.once ?? false,
        ...(idle !== undefined ? { idleTimeout: idle } : {}),
        ...(handshake !== undefined ? { handshakeTimeout: handshake } : {}),
      });
      const socketPath = values.socket;
      if (socketPath !== undefined) {
        // A signal ends the process without closing the server: remove the socket file then.
        process.once('exit', () => {
          try {
            unlinkSync(socketPath);
          } catch {
            // already removed by a clean close
          }
        });
      }
      // A signal closes the server and the image, so metadata kept in memory reaches the file.
      if (writable) setSignalCloser(() => server.close().then(closeOnce));
      print(server.uri);
      await server.done;
      setSignalCloser(undefined);
    } finally {
      await closeOnce();
    }
    return 0;
  },
});

function integer(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}`);
  }
  return n;
}

/** A DUR flag in seconds (undefined when not given). */
function duration(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined || ms === 0) {
    throw new UsageError(`${flag} must be a duration above 0 like 30s, 45m, 12h or 30d`);
  }
  return ms / 1000;
}

function isLoopback(address: string): boolean {
  if (address === 'localhost') return true;
  if (isIP(address) === 4) return address.startsWith('127.');
  return address === '::1';
}
