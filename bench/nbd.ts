/**
 * NBD benchmark: how fast nbdcopy reads an image served by `diskpipe serve` next to the same
 * image served by qemu-nbd, and how fast diskpipe's NBD client reads a qemu-nbd export next to
 * nbdcopy reading it. 1 GiB image with 512 MiB of data (32 MiB runs), raw and qcow2, Unix
 * sockets, sink = null: / discard, page cache warm.
 *
 * diskpipe advertises multi-conn, so nbdcopy opens 4 connections to it; qemu-nbd (-r -t) does
 * not, so nbdcopy uses one. The "-C 1" rows compare both servers with one connection each.
 *
 * Runs alternate between diskpipe and its peer (the machine may be shared) and each figure is
 * the median of NBD_BENCH_REPS runs (default 7); the best run is shown too. CPU per run (user +
 * system, all threads) is less sensitive to a busy machine than time: for nbdcopy rows it is the
 * server's (diskpipe serve vs qemu-nbd), for client rows the reader's (diskpipe vs nbdcopy).
 * Peak RSS is the high-water mark of each `diskpipe serve` process and of this process.
 *
 *   npx tsc -p . && node dist/bench/nbd.js
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
import { formatDriver } from '../src/formats/registry.js';
import { openImage } from '../src/open.js';

const IMAGE_SIZE = 1024 * 1024 * 1024;
const DATA_RUN = 32 * 1024 * 1024; // data in every other 32 MiB: 512 MiB of data in all
const REPS = Number(process.env.NBD_BENCH_REPS ?? 7);

/** One run: wall time, and CPU of the server and of the reader. */
export interface Sample {
  seconds: number;
  serverMs: number;
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

export async function run(): Promise<NbdBenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'diskpipe-bench-nbd-'));
  const procs: ChildProcess[] = [];
  const serveRss: string[] = [];
  try {
    const raw = join(dir, 'image.raw');
    const dataBytes = makeImage(raw);
    const qcow2 = join(dir, 'image.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    // Compressed clusters: serving one means decoding every read (issue 11's serve target).
    const deflate = join(dir, 'image.deflate.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, deflate]);
    const rows: NbdBenchRow[] = [];
    const row = (name: string, peer: string, cpu: 'server' | 'client') => {
      const r: NbdBenchRow = {
        case: name,
        bytes: dataBytes,
        cpu,
        diskpipe: [],
        peer,
        peerRuns: [],
      };
      rows.push(r);
      return r;
    };

    for (const [label, format, path] of [
      ['raw', 'raw', raw],
      ['qcow2', 'qcow2', qcow2],
      ['deflate qcow2', 'qcow2', deflate],
    ] as const) {
      const tag = label.replace(' ', '-');
      const qemuSock = join(dir, `qemu-${tag}.sock`);
      const qemu = await serveWith(
        'qemu-nbd',
        ['-f', format, '-r', '-t', '-k', qemuSock, path],
        qemuSock,
      );
      procs.push(qemu);
      const qemuUri = `nbd+unix:///?socket=${qemuSock}`;
      let serve: ChildProcess | undefined;
      let dpUri = '';
      if (format === 'raw' || formatDriver('qcow2')) {
        const dpSock = join(dir, `diskpipe-${tag}.sock`);
        const main = new URL('../src/cli/main.js', import.meta.url).pathname;
        serve = await serveWith(
          process.execPath,
          [main, 'serve', '--socket', dpSock, path],
          dpSock,
        );
        procs.push(serve);
        dpUri = `nbd+unix:///?socket=${dpSock}`;
      }
      const copy = dpUri ? row(`nbdcopy <- ${label} export`, 'qemu-nbd', 'server') : undefined;
      const copy1 = dpUri
        ? row(`nbdcopy -C 1 <- ${label} export`, 'qemu-nbd', 'server')
        : undefined;
      const client = row(`client <- qemu-nbd ${label}`, 'nbdcopy', 'client');
      const viaQemu = (fn: () => Promise<void>, inProcess = false) =>
        measure(qemu.pid!, inProcess, fn);
      const viaDiskpipe = (fn: () => Promise<void>) => measure(serve!.pid!, false, fn);
      for (let i = 0; i < REPS; i++) {
        const peer = await viaQemu(() => nbdcopy(qemuUri));
        if (copy && copy1) {
          copy.peerRuns.push(peer);
          copy.diskpipe.push(await viaDiskpipe(() => nbdcopy(dpUri)));
          copy1.peerRuns.push(await viaQemu(() => nbdcopy(qemuUri, ['-C', '1'])));
          copy1.diskpipe.push(await viaDiskpipe(() => nbdcopy(dpUri, ['-C', '1'])));
        }
        client.peerRuns.push(peer);
        client.diskpipe.push(await viaQemu(() => readAllData(qemuUri), true));
      }
      if (serve?.pid) serveRss.push(`diskpipe serve (${label}) ${peakRss(serve.pid)}`);
    }
    print(rows);
    const self = `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`;
    process.stdout.write(
      `peak RSS: ${[...serveRss, `client (this process) ${self}`].join(', ')}\n`,
    );
    return rows;
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  }
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

async function serveWith(cmd: string, args: string[], socket: string): Promise<ChildProcess> {
  const proc = spawn(cmd, args, { stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
  if (!existsSync(socket)) throw new Error(`${cmd} did not start`);
  return proc;
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
  return { seconds, serverMs: processCpuMs(serverPid) - s0, clientMs: reader() - c0 };
}

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

/** Fields of /proc/PID/stat after the command name (0: state, 11/12: utime/stime, 13/14: children). */
function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

function processCpuMs(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
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
      'cpu = CPU ms per run of the server (nbdcopy rows) or of the reader (client rows)\n',
  );
  for (const r of rows) {
    const secs = (xs: Sample[]) => xs.map((x) => x.seconds);
    const cpu = (xs: Sample[]) =>
      median(xs.map((x) => (r.cpu === 'server' ? x.serverMs : x.clientMs))).toFixed(0);
    const dp = median(secs(r.diskpipe));
    const peer = median(secs(r.peerRuns));
    const dpBest = Math.min(...secs(r.diskpipe));
    const peerBest = Math.min(...secs(r.peerRuns));
    process.stdout.write(
      `${r.case.padEnd(30)} diskpipe ${rate(r.bytes, dp).padStart(10)} (${rate(r.bytes, dpBest)})` +
        `  ${r.peer.padEnd(8)} ${rate(r.bytes, peer).padStart(10)} (${rate(r.bytes, peerBest)})` +
        `  ratio ${(peer / dp).toFixed(2)} (${(peerBest / dpBest).toFixed(2)})` +
        `  ${r.cpu} cpu ${cpu(r.diskpipe)} vs ${cpu(r.peerRuns)} ms\n`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
