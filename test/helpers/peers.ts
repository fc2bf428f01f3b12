/**
 * Test helpers around the real peers (qemu-img, qemu-io, nbdinfo...). CI installs them, so a
 * missing peer is a failure, never a skip.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Where each peer comes from, for the "not found" message (Debian/Ubuntu package names). */
const PACKAGES: Record<string, string> = {
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  'qemu-nbd': 'qemu-utils',
  nbdkit: 'nbdkit',
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  'mkfs.xfs': 'xfsprogs',
  xz: 'xz-utils',
  zstd: 'zstd',
  bzip2: 'bzip2',
  sgdisk: 'gdisk',
  'mkfs.vfat': 'dosfstools',
  'mkfs.ext4': 'e2fsprogs',
  openssl: 'openssl',
};

/**
 * The error for a peer that could not be started. A missing program has no stderr, so without
 * this a test would fail with an empty message instead of the peer's name.
 */
export function peerError(cmd: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e?.code === 'ENOENT') {
    return new Error(`peer ${cmd} not found (install ${PACKAGES[cmd] ?? cmd})`, { cause: err });
  }
  return new Error(`peer ${cmd} could not be started: ${e?.message ?? String(err)}`, {
    cause: err,
  });
}

/** Runs a peer synchronously; throws only if it cannot be started (the status is the caller's). */
export function runSync(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; cwd?: string } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { ...opts, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error) throw peerError(cmd, r.error);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a peer; rejects with its name and stderr on a non-zero exit or if it is missing. */
export async function run(
  cmd: string,
  args: string[],
  opts: { input?: string; cwd?: string } = {},
): Promise<string> {
  if (opts.input !== undefined) {
    const r = runSync(cmd, args, opts);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }
  try {
    const { stdout } = await execFileP(cmd, args, {
      maxBuffer: 1 << 28,
      encoding: 'utf8',
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: unknown };
    if (e.code === 'ENOENT') throw peerError(cmd, err);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

/** Runs a peer synchronously; throws with its name and stderr on a non-zero exit. */
export function runChecked(cmd: string, args: string[]): string {
  const r = runSync(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

export function qemuImg(...args: string[]): Promise<string> {
  return run('qemu-img', args);
}

/** Runs qemu-io commands (e.g. 'write -P 0x55 0 64k') on an image. */
export function qemuIo(image: string, commands: string[], format?: string): Promise<string> {
  const args = format ? ['-f', format] : [];
  for (const c of commands) args.push('-c', c);
  return run('qemu-io', [...args, image]);
}

export interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

export async function qemuMap(image: string, format?: string): Promise<QemuMapEntry[]> {
  const args = ['map', '--output=json', ...(format ? ['-f', format] : []), image];
  return JSON.parse(await qemuImg(...args)) as QemuMapEntry[];
}

/** A file's data ranges as qemu-img map reports them, adjacent ones merged: [start, end). */
export async function qemuDataRanges(path: string): Promise<[number, number][]> {
  const out: [number, number][] = [];
  for (const e of await qemuMap(path, 'raw')) {
    if (e.zero) continue;
    const last = out.at(-1);
    if (last && last[1] === e.start) last[1] += e.length;
    else out.push([e.start, e.start + e.length]);
  }
  return out;
}

/** A temporary directory removed when the process exits. */
export function tempDir(prefix = 'diskpipe-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the built CLI; returns exit status, stdout and stderr (never throws on status). */
export function diskpipe(args: string[], opts: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}) {
  const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [main, ...args], {
    input: opts.input,
    env: { ...process.env, ...opts.env },
    maxBuffer: 1 << 28,
  });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/**
 * Flushes a file just written so its allocation is final: ext4 may add an extent-tree block at
 * writeback, which moved `actual-size` by 4 KiB between two readers of a busy machine.
 */
export function settleAllocation(path: string): string {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Creates (or resets) a sparse file of `size` bytes. */
export function sparseFile(path: string, size: number): string {
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

/**
 * A sparse disk of `size` bytes holding the same `run` random bytes at each offset in `at`
 * (incompressible data in known places; the rest is a hole).
 */
export function diskWithRandomRuns(path: string, size: number, at: number[], run: number): string {
  sparseFile(path, size);
  const data = randomBytes(run);
  const fd = openSync(path, 'r+');
  try {
    for (const offset of at) writeSync(fd, data, 0, run, offset);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Runs the CLI without blocking the event loop (in-process servers keep answering). */
export function diskpipeAsync(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [main, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<{
    status: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve) =>
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })),
  );
  return { child, done, stderr: () => stderr };
}
