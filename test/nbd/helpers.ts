/** Helpers for NBD tests: real peers (qemu-nbd, nbdkit) and `diskpipe serve` as processes. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

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

/**
 * Where each peer says it is ready: both write their pid file after listen(2), while the socket
 * file exists from bind(2) on, before connections are accepted (ECONNREFUSED). Connecting to
 * find out is no answer either: qemu-nbd without -t exits after its first client.
 */
function pidFileArgs(cmd: string, pidFile: string): string[] {
  if (cmd === 'qemu-nbd') return [`--pid-file=${pidFile}`];
  if (cmd === 'nbdkit') return ['-P', pidFile]; // before the plugin name
  throw new Error(`startPeer: no readiness signal known for ${cmd}`);
}

/** Starts a peer that serves on a Unix socket and waits until it accepts connections. */
export async function startPeer(cmd: string, args: string[], socket: string): Promise<Peer> {
  const pidFile = `${socket}.pid`;
  const peer = track(
    spawn(cmd, [...pidFileArgs(cmd, pidFile), ...args], { stdio: ['ignore', 'ignore', 'pipe'] }),
  );
  // No deadline: the peer either writes its pid file or exits.
  while (peer.proc.exitCode === null && peer.proc.signalCode === null) {
    if (readPid(pidFile) === peer.proc.pid) return peer;
    await sleep(25);
  }
  await peer.stop();
  throw new Error(`${cmd} did not start: ${peer.stderr()}`);
}

/** The pid in a pid file once it is completely written (the line ends with a newline). */
function readPid(path: string): number | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    return text.endsWith('\n') ? Number(text.trim()) : undefined;
  } catch {
    return undefined;
  }
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

/** Resolves with the exit status once the process ends (null if killed by a signal); no deadline. */
export function exitOf(peer: Peer): Promise<number | null> {
  return new Promise<number | null>((resolve) => {
    if (peer.proc.exitCode !== null) resolve(peer.proc.exitCode);
    else peer.proc.once('exit', (code) => resolve(code));
  });
}
