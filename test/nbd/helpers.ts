/** Helpers for NBD tests: real peers (qemu-nbd, nbdkit) and `diskpipe serve` as processes. */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
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

/** Starts a peer that serves on a Unix socket and waits for the socket to appear. */
export async function startPeer(cmd: string, args: string[], socket: string): Promise<Peer> {
  const peer = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  for (let i = 0; i < 200; i++) {
    if (existsSync(socket)) return peer;
    if (peer.proc.exitCode !== null) break;
    await sleep(25);
  }
  await peer.stop();
  throw new Error(`${cmd} did not start: ${peer.stderr()}`);
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

/** Resolves with the exit status once the process ends (null if killed by a signal). */
export function exitOf(peer: Peer, timeoutMs = 10000): Promise<number | null> {
  return Promise.race([
    new Promise<number | null>((resolve) => {
      if (peer.proc.exitCode !== null) resolve(peer.proc.exitCode);
      else peer.proc.once('exit', (code) => resolve(code));
    }),
    sleep(timeoutMs, undefined, { ref: false }).then(() => {
      throw new Error('process did not exit');
    }),
  ]);
}
