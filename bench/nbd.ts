/**
 * NBD benchmark: how fast nbdcopy reads an image served by `diskpipe serve` next to the same
 * image served by qemu-nbd, and how fast diskpipe's NBD client reads a qemu-nbd export next to
 * nbdcopy reading it. Default images: 1 GiB with 512 MiB of random data (32 MiB runs), raw,
 * qcow2 and deflate qcow2. With NBD_BENCH_SET=perf: issue 11's perf set instead (6 GiB virtual,
 * 1.5 GiB of half text, half random data), its deflate and zstd qcow2 (NBD_BENCH_IMAGES=deflate
 * or zstd picks one), server rows only. Unix sockets, sink = null:, page cache warm.
 *
 * Both servers offer the same connections: qemu-nbd runs with `-e 4` (so it advertises
 * multi-conn, as diskpipe does) and nbdcopy opens 4 connections to either; the "-C 1" rows
 * compare them with one connection each. A server counts as started once it has said so:
 * diskpipe prints its URI when listening, qemu-nbd writes its --pid-file.
 *
 * Runs alternate between diskpipe and its peer (the machine may be shared) and each figure is
 * the median of NBD_BENCH_REPS runs (default 7); the best run is shown too. CPU per run (user
 * and system, all threads) is less sensitive to a busy machine than time: for nbdcopy rows it
 * is the server's (diskpipe serve vs qemu-nbd), for client rows the reader's (diskpipe vs
 * nbdcopy). Peak RSS is the high-water mark of each server process and of this process.
 *
 *   npx tsc -p . && node dist/bench/nbd.js
 *   NBD_BENCH_SET=perf NBD_BENCH_IMAGES=deflate NBD_BENCH_REPS=5 node dist/bench/nbd.js
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { openImage } from '../src/open.js';
import { perfSet } from './perf-set.js';
import { MiB } from './util.js';

const IMAGE_SIZE = 1024 * MiB;
const DATA_RUN = 32 * MiB; // data in every other 32 MiB: 512 MiB of data in all
const REPS = Number(process.env.NBD_BENCH_REPS ?? 7);

/** One run: wall time, and CPU (user, system) of the server and of the reader. */
export interface Sample {
  seconds: number;
  serverUserMs: number;
  serverSysMs: number;
  clientMs: number;
}

export interface NbdBenchRow {
  case: string;
  bytes: number;
  /** Which CPU figure compares the two: the server's or the reader's. */
  cpu: 'server' | 'client';
  diskpipe: Sample[];
  peer: string;
  peerRuns: Sample[];
}

interface Served {
  label: string;
  format: 'raw' | 'qcow2';
  path: string;
  /** Bytes of data (what nbdcopy reads; the rest are zeroes it skips). */
  dataBytes: number;
}

export async function run(): Promise<NbdBenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'diskpipe-bench-nbd-'));
  const procs: ChildProcess[] = [];
  const rss: string[] = [];
  try {
    const perf = process.env.NBD_BENCH_SET === 'perf';
    const images = perf ? perfImages() : defaultImages(dir);
    const rows: NbdBenchRow[] = [];
    const row = (name: string, bytes: number, peer: string, cpu: 'server' | 'client') => {
      const r: NbdBenchRow = { case: name, bytes, cpu, diskpipe: [], peer, peerRuns: [] };
      rows.push(r);
      return r;
    };

    for (const img of images) {
      const tag = img.label.replace(/ /g, '-');
      const qemuSock = join(dir, `qemu-${tag}.sock`);
      const qemu = await startQemuNbd(img, qemuSock, join(dir, `qemu-${tag}.pid`));
      procs.push(qemu.proc);
      const dpSock = join(dir, `diskpipe-${tag}.sock`);
      const serve = await startServe(img.path, dpSock);
      procs.push(serve);
      const qemuUri = `nbd+unix:///?socket=${qemuSock}`;
      const dpUri = `nbd+unix:///?socket=${dpSock}`;
      const copy = row(`nbdcopy <- ${img.label}`, img.dataBytes, 'qemu-nbd', 'server');
      const copy1 = row(`nbdcopy -C 1 <- ${img.label}`, img.dataBytes, 'qemu-nbd', 'server');
      const client = perf
        ? undefined
        : row(`client <- qemu-nbd ${img.label}`, img.dataBytes, 'nbdcopy', 'client');
      const viaQemu = (fn: () => Promise<void>, inProcess = false) =>
        measure(qemu.pid, inProcess, fn);
      const viaDiskpipe = (fn: () => Promise<void>) => measure(serve.pid!, false, fn);
      for (let i = 0; i < REPS; i++) {
        const peer = await viaQemu(() => nbdcopy(qemuUri));
        copy.peerRuns.push(peer);
        copy.diskpipe.push(await viaDiskpipe(() => nbdcopy(dpUri)));
        copy1.peerRuns.push(await viaQemu(() => nbdcopy(qemuUri, ['-C', '1'])));
        copy1.diskpipe.push(await viaDiskpipe(() => nbdcopy(dpUri, ['-C', '1'])));
        if (client) {
          client.peerRuns.push(peer);
          client.diskpipe.push(await viaQemu(() => readAllData(qemuUri), true));
        }
      }
      rss.push(`diskpipe serve (${img.label}) ${peakRss(serve.pid!)}`);
      rss.push(`qemu-nbd (${img.label}) ${peakRss(qemu.pid)}`);
    }
    print(rows);
    const self = `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`;
    process.stdout.write(`peak RSS: ${[...rss, `client (this process) ${self}`].join(', ')}\n`);
    return rows;
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  }
}

function defaultImages(dir: string): Served[] {
  const raw = join(dir, 'image.raw');
  const dataBytes = makeImage(raw);
  const qcow2 = join(dir, 'image.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  // Compressed clusters: serving one means decoding every read (issue 11's serve target).
  const deflate = join(dir, 'image.deflate.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, deflate]);
  return [
    { label: 'raw export', format: 'raw', path: raw, dataBytes },
    { label: 'qcow2 export', format: 'qcow2', path: qcow2, dataBytes },
    { label: 'deflate qcow2 export', format: 'qcow2', path: deflate, dataBytes },
  ];
}

/** Issue 11's perf set: 48 runs of 32 MiB of data in 6 GiB. */
function perfImages(): Served[] {
  const set = perfSet();
  const dataBytes = 48 * 32 * MiB;
  const all: Served[] = [
    { label: 'perf deflate qcow2', format: 'qcow2', path: set.deflate, dataBytes },
    { label: 'perf zstd qcow2', format: 'qcow2', path: set.zstd, dataBytes },
  ];
  const only = process.env.NBD_BENCH_IMAGES?.split(',');
  return only ? all.filter((s) => only.some((o) => s.label.includes(o))) : all;
}

function makeImage(path: string): number {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1024 * 1024);
  let data = 0;
  for (let at = 0; at < IMAGE_SIZE; at += 2 * DATA_RUN) {
    for (let i = 0; i < DATA_RUN; i += chunk.length) {
      for (let j = 0; j < chunk.length; j += 4)
        chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, j);
      writeSync(fd, chunk, 0, chunk.length, at + i);
    }
    data += DATA_RUN;
  }
  closeSync(fd);
  execFileSync('truncate', ['-s', String(IMAGE_SIZE), path]);
  return data;
}

/** `diskpipe serve`, once it has printed its URI (it is listening then). */
async function startServe(path: string, socket: string): Promise<ChildProcess> {
  const main = new URL('../src/cli/main.js', import.meta.url).pathname;
  const proc = spawn(process.execPath, [main, 'serve', '--socket', socket, path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`diskpipe serve exited ${code}`)));
  });
  return proc;
}

/** qemu-nbd, read-only, persistent, 4 clients (so it advertises multi-conn), once listening. */
async function startQemuNbd(img: Served, socket: string, pidFile: string) {
  const args = ['-r', '-t', '-e', '4', '-f', img.format, '-k', socket, '--pid-file', pidFile];
  const proc = spawn('qemu-nbd', [...args, img.path], { stdio: 'ignore' });
  let exited = false;
  proc.once('exit', () => {
    exited = true;
  });
  // qemu-nbd writes its pid file once it listens; no deadline (a busy machine is slow).
  while (!existsSync(pidFile) || readFileSync(pidFile, 'utf8').trim() === '') {
    if (exited) throw new Error('qemu-nbd exited');
    await sleep(25);
  }
  return { proc, pid: Number(readFileSync(pidFile, 'utf8').trim()) };
}

function nbdcopy(uri: string, flags: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('nbdcopy', [...flags, uri, 'null:'], { stdio: 'ignore' });
    p.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`nbdcopy exited ${code}`)),
    );
  });
}

/** What a copy engine does with a source: read every non-zero extent, 16 reads in flight. */
async function readAllData(uri: string): Promise<void> {
  const image = await openImage(uri, { format: 'raw' });
  const piece = 2 * 1024 * 1024;
  const buffers = Array.from({ length: 16 }, () => new Uint8Array(piece));
  const free = [...buffers];
  const waiting: (() => void)[] = [];
  const reads: Promise<void>[] = [];
  for await (const e of image.extents()) {
    if (e.zero) continue;
    for (let at = e.offset; at < e.offset + e.length; at += piece) {
      while (free.length === 0) await new Promise<void>((r) => waiting.push(r));
      const buf = free.pop()!;
      const n = Math.min(piece, e.offset + e.length - at);
      reads.push(
        image.read(buf.subarray(0, n), at).finally(() => {
          free.push(buf);
          waiting.shift()?.();
        }),
      );
    }
  }
  await Promise.all(reads);
  await image.close();
}

/**
 * Runs fn, timing it and taking the CPU the server (`serverPid`) and the reader used: this
 * process when the reader runs in it, else the child it waited for (nbdcopy).
 */
async function measure(
  serverPid: number,
  inProcess: boolean,
  fn: () => Promise<void>,
): Promise<Sample> {
  const reader = () => (inProcess ? selfCpuMs() : childrenCpuMs());
  const s0 = processCpuMs(serverPid);
  const c0 = reader();
  const t = process.hrtime.bigint();
  await fn();
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const s1 = processCpuMs(serverPid);
  return {
    seconds,
    serverUserMs: s1.user - s0.user,
    serverSysMs: s1.sys - s0.sys,
    clientMs: reader() - c0,
  };
}

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

/** Fields of /proc/PID/stat after the command name (0: state, 11/12: utime/stime, 13/14: children). */
function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

function processCpuMs(pid: number): { user: number; sys: number } {
  const f = statFields(pid);
  return { user: Number(f[11]) * TICK_MS, sys: Number(f[12]) * TICK_MS };
}

function childrenCpuMs(): number {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) * TICK_MS;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** VmHWM of a running process (Linux), as "N MiB". */
function peakRss(pid: number): string {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? `${(Number(m[1]) / 1024).toFixed(0)} MiB` : '?';
  } catch {
    return '?';
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function print(rows: NbdBenchRow[]): void {
  const rate = (bytes: number, s: number) => `${(bytes / 2 ** 20 / s).toFixed(0)} MiB/s`;
  process.stdout.write(
    `median of ${REPS} runs (best run in brackets); ratio = diskpipe speed / peer speed; ` +
      'cpu = CPU ms per run (user+sys) of the server (nbdcopy rows) or of the reader (client rows)\n',
  );
  for (const r of rows) {
    const secs = (xs: Sample[]) => xs.map((x) => x.seconds);
    const ms = (xs: Sample[], f: (x: Sample) => number) => median(xs.map(f)).toFixed(0);
    const cpu = (xs: Sample[]) =>
      r.cpu === 'server'
        ? `${ms(xs, (x) => x.serverUserMs)}+${ms(xs, (x) => x.serverSysMs)}`
        : ms(xs, (x) => x.clientMs);
    const dp = median(secs(r.diskpipe));
    const peer = median(secs(r.peerRuns));
    const dpBest = Math.min(...secs(r.diskpipe));
    const peerBest = Math.min(...secs(r.peerRuns));
    const total = (xs: Sample[]) =>
      median(xs.map((x) => (r.cpu === 'server' ? x.serverUserMs + x.serverSysMs : x.clientMs)));
    process.stdout.write(
      `${r.case.padEnd(34)} diskpipe ${rate(r.bytes, dp).padStart(10)} (${rate(r.bytes, dpBest)})` +
        `  ${r.peer.padEnd(8)} ${rate(r.bytes, peer).padStart(10)} (${rate(r.bytes, peerBest)})` +
        `  ratio ${(peer / dp).toFixed(2)} (${(peerBest / dpBest).toFixed(2)})` +
        `  ${r.cpu} cpu ${cpu(r.diskpipe)} vs ${cpu(r.peerRuns)} ms` +
        ` (${(total(r.diskpipe) / total(r.peerRuns)).toFixed(2)}x)\n`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
