/** Helpers for NBD tests: real peers (qemu-nbd, nbdkit) and `diskpipe serve` as processes. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { peerError, tempDir } from '../helpers/peers.js';

export interface Peer {
  readonly proc: ChildProcess;
  /** Stops the peer (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<number | null>;
  stderr(): string;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

function track(proc: ChildProcess): Peer {
  running.add(proc);
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      resolve(code ?? (signal ? -1 : null));
    });
    // A program that could not be started emits 'error' and never 'exit'.
    proc.once('error', () => {
      if (proc.pid !== undefined) return;
      running.delete(proc);
      resolve(null);
    });
  });
  return {
    proc,
    stderr: () => err,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
  };
}

/** The pid-file option of each peer: both write the file once they listen. */
const PID_FILE_ARGS: Record<string, (file: string) => string[]> = {
  'qemu-nbd': (file) => [`--pid-file=${file}`],
  nbdkit: (file) => ['-P', file],
};

/**
 * Starts a peer (qemu-nbd or nbdkit) serving on a Unix socket and waits until it listens.
 * The socket file appears at bind(), before listen() (clients then see ECONNREFUSED); the
 * pid file holding the peer's pid is written after. There is no time limit: the wait ends
 * when the peer is ready or exits.
 */
export async function startPeer(cmd: string, args: string[], socket: string): Promise<Peer> {
  const pidArgs = PID_FILE_ARGS[cmd];
  if (!pidArgs) throw new Error(`startPeer: no readiness signal known for ${cmd}`);
  const pidFile = `${socket}.pid`;
  const proc = spawn(cmd, [...pidArgs(pidFile), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let failed: Error | undefined;
  proc.once('error', (err) => {
    failed = peerError(cmd, err);
  });
  const peer = track(proc);
  while (proc.exitCode === null && proc.signalCode === null && !failed) {
    if (proc.pid !== undefined && readPid(pidFile) === proc.pid) return peer;
    await sleep(20);
  }
  await peer.stop();
  throw failed ?? new Error(`${cmd} exited before listening: ${peer.stderr()}`);
}

/** The pid in a pid file, or undefined while it is missing or still being written. */
function readPid(file: string): number | undefined {
  try {
    const text = readFileSync(file, 'utf8');
    return text.endsWith('\n') ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/** How each peer is told to serve on a Unix socket (nbdkit: in the foreground, tied to us). */
const SOCKET_ARGS: Record<string, (socket: string) => string[]> = {
  'qemu-nbd': (socket) => ['-k', socket],
  nbdkit: (socket) => ['--exit-with-parent', '-f', '-U', socket],
};

let sockets = 0;

/**
 * Runs `fn` while `cmd` (qemu-nbd or nbdkit) serves `args` on a fresh Unix socket, and stops
 * the peer afterwards, also when `fn` throws. `uri(name)` is the socket's nbd+unix:// URI.
 */
export async function withNbdPeer<T>(
  cmd: 'qemu-nbd' | 'nbdkit',
  args: string[],
  fn: (uri: (exportName?: string) => string) => Promise<T>,
): Promise<T> {
  const socket = join(socketDir(), `${cmd}-${sockets++}.sock`);
  const peer = await startPeer(cmd, [...SOCKET_ARGS[cmd]!(socket), ...args], socket);
  try {
    return await fn((name = '') => `nbd+unix:///${name}?socket=${socket}`);
  } finally {
    await peer.stop();
  }
}

let dir: string | undefined;
function socketDir(): string {
  dir ??= tempDir('diskpipe-nbd-peer-');
  return dir;
}

export interface Served extends Peer {
  uri: string;
}

/** Runs `diskpipe serve ARGS` and resolves with the URI it prints once listening. */
export async function startServe(args: string[]): Promise<Served> {
  const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
  const proc = spawn(process.execPath, [main, 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const peer = track(proc);
  const lines = createInterface({ input: proc.stdout! });
  const uri = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`serve exited ${code}: ${peer.stderr()}`)));
  });
  return { ...peer, uri };
}

/**
 * Resolves with the exit status once the process ends (null if killed by a signal). No time
 * limit: a process that never exits is the test runner's to report.
 */
export function exitOf(peer: Peer): Promise<number | null> {
  return new Promise<number | null>((resolve) => {
    if (peer.proc.exitCode !== null || peer.proc.signalCode !== null) resolve(peer.proc.exitCode);
    else peer.proc.once('exit', (code) => resolve(code));
  });
}
