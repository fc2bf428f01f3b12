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
 * the median of NBD_BENCH_REPS runs (default 7); the best run is shown too. Peak RSS is the
 * high-water mark of each `diskpipe serve` process and of this process (the client).
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

export interface NbdBenchRow {
  case: string;
  bytes: number;
  /** Seconds per run, diskpipe and its peer. */
  diskpipe: number[];
  peer: string;
  peerRuns: number[];
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
    const rows: NbdBenchRow[] = [];
    const row = (name: string, peer: string) => {
      const r: NbdBenchRow = { case: name, bytes: dataBytes, diskpipe: [], peer, peerRuns: [] };
      rows.push(r);
      return r;
    };

    for (const [format, path] of [
      ['raw', raw],
      ['qcow2', qcow2],
    ] as const) {
      const qemuSock = join(dir, `qemu-${format}.sock`);
      procs.push(
        await serveWith('qemu-nbd', ['-f', format, '-r', '-t', '-k', qemuSock, path], qemuSock),
      );
      const qemuUri = `nbd+unix:///?socket=${qemuSock}`;
      let serve: ChildProcess | undefined;
      let dpUri = '';
      if (format === 'raw' || formatDriver('qcow2')) {
        const dpSock = join(dir, `diskpipe-${format}.sock`);
        const main = new URL('../src/cli/main.js', import.meta.url).pathname;
        serve = await serveWith(
          process.execPath,
          [main, 'serve', '--socket', dpSock, path],
          dpSock,
        );
        procs.push(serve);
        dpUri = `nbd+unix:///?socket=${dpSock}`;
      }
      const copy = dpUri ? row(`nbdcopy <- ${format} export`, 'qemu-nbd') : undefined;
      const copy1 = dpUri ? row(`nbdcopy -C 1 <- ${format} export`, 'qemu-nbd') : undefined;
      const client = row(`client <- qemu-nbd ${format}`, 'nbdcopy');
      for (let i = 0; i < REPS; i++) {
        const peer = await timed(() => nbdcopy(qemuUri));
        if (copy && copy1) {
          copy.peerRuns.push(peer);
          copy.diskpipe.push(await timed(() => nbdcopy(dpUri)));
          copy1.peerRuns.push(await timed(() => nbdcopy(qemuUri, ['-C', '1'])));
          copy1.diskpipe.push(await timed(() => nbdcopy(dpUri, ['-C', '1'])));
        }
        client.peerRuns.push(peer);
        client.diskpipe.push(await timed(() => readAllData(qemuUri)));
      }
      if (serve?.pid) serveRss.push(`diskpipe serve (${format}) ${peakRss(serve.pid)}`);
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

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
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
  process.stdout.write(`median of ${REPS} runs (best run in brackets); ratio = speed vs peer\n`);
  for (const r of rows) {
    const dp = median(r.diskpipe);
    const peer = median(r.peerRuns);
    const dpBest = Math.min(...r.diskpipe);
    const peerBest = Math.min(...r.peerRuns);
    process.stdout.write(
      `${r.case.padEnd(30)} diskpipe ${rate(r.bytes, dp).padStart(10)} (${rate(r.bytes, dpBest)})` +
        `  ${r.peer.padEnd(8)} ${rate(r.bytes, peer).padStart(10)} (${rate(r.bytes, peerBest)})` +
        `  ratio ${(peer / dp).toFixed(2)} (${(peerBest / dpBest).toFixed(2)})\n`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
