/**
 * NBD benchmark (one run of each, best of three): how fast nbdcopy reads an image served by
 * `diskpipe serve` next to the same image served by qemu-nbd, and how fast diskpipe's NBD client
 * reads a qemu-nbd export next to nbdcopy reading it. Unix sockets, sink = null:/discard.
 *
 *   npx tsc -p . && node dist/bench/nbd.js
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { formatDriver } from '../src/formats/registry.js';
import { openImage } from '../src/open.js';

const IMAGE_SIZE = 1024 * 1024 * 1024;
const DATA_RUN = 32 * 1024 * 1024; // data in every other 64 MiB: 256 MiB of data in all

export interface NbdBenchRow {
  case: string;
  bytes: number;
  diskpipeSeconds: number;
  peer: string;
  peerSeconds: number;
}

export async function run(): Promise<NbdBenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'diskpipe-bench-nbd-'));
  const procs: ChildProcess[] = [];
  try {
    const raw = join(dir, 'image.raw');
    const dataBytes = makeImage(raw);
    const qcow2 = join(dir, 'image.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    const rows: NbdBenchRow[] = [];

    for (const [format, path] of [
      ['raw', raw],
      ['qcow2', qcow2],
    ] as const) {
      const qemuSock = join(dir, `qemu-${format}.sock`);
      procs.push(
        await serveWith('qemu-nbd', ['-f', format, '-r', '-t', '-k', qemuSock, path], qemuSock),
      );
      const qemuUri = `nbd+unix:///?socket=${qemuSock}`;
      const peerCopy = await best(() => nbdcopy(qemuUri));

      if (format === 'raw' || formatDriver('qcow2')) {
        const dpSock = join(dir, `diskpipe-${format}.sock`);
        const main = new URL('../src/cli/main.js', import.meta.url).pathname;
        procs.push(
          await serveWith(process.execPath, [main, 'serve', '--socket', dpSock, path], dpSock),
        );
        const dpCopy = await best(() => nbdcopy(`nbd+unix:///?socket=${dpSock}`));
        rows.push({
          case: `nbdcopy ${format} export -> null:`,
          bytes: dataBytes,
          diskpipeSeconds: dpCopy,
          peer: 'qemu-nbd',
          peerSeconds: peerCopy,
        });
      }
      const clientRead = await best(() => readAllData(qemuUri));
      rows.push({
        case: `read qemu-nbd ${format} export (data extents)`,
        bytes: dataBytes,
        diskpipeSeconds: clientRead,
        peer: 'nbdcopy',
        peerSeconds: peerCopy,
      });
    }
    print(rows);
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

function nbdcopy(uri: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('nbdcopy', [uri, 'null:'], { stdio: 'ignore' });
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

async function best(fn: () => Promise<void>): Promise<number> {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const t = process.hrtime.bigint();
    await fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return min;
}

function print(rows: NbdBenchRow[]): void {
  const mib = (bytes: number, s: number) => `${(bytes / 2 ** 20 / s).toFixed(0)} MiB/s`;
  for (const r of rows) {
    const ratio = (r.peerSeconds / r.diskpipeSeconds).toFixed(2);
    process.stdout.write(
      `${r.case.padEnd(44)} diskpipe ${r.diskpipeSeconds.toFixed(3)} s (${mib(r.bytes, r.diskpipeSeconds)})` +
        `  ${r.peer} ${r.peerSeconds.toFixed(3)} s (${mib(r.bytes, r.peerSeconds)})  speed ratio ${ratio}\n`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
