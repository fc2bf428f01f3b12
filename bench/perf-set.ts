/**
 * The perf set of issue 11: a 6 GiB virtual disk with 48 runs of 32 MiB spread evenly,
 * alternating AES-CTR random (incompressible) and text (compressible) data, then qcow2,
 * deflate-compressed qcow2 and zstd-compressed qcow2 made by qemu-img. Built once into
 * BENCH_PERF_DIR (default /var/tmp/dp-perf) and reused. `node dist/bench/perf-set.js` builds it.
 */
import { createCipheriv } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { makeQcow2Variants } from './images.js';
import { GiB, MiB } from './util.js';

export interface PerfSet {
  dir: string;
  raw: string;
  qcow2: string;
  deflate: string;
  zstd: string;
}

const RUNS = 48;
const RUN_BYTES = 32 * MiB;
const VIRTUAL = 6 * GiB;
const WORDS =
  'the of disk image cluster sector boot kernel root usr lib share cache data block\n'.split(' ');

/** Deterministic incompressible bytes: AES-256-CTR of zeroes under a fixed key. */
function randomRun(i: number): Buffer {
  const key = Buffer.alloc(32, i + 1);
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(RUN_BYTES));
}

/** Deterministic text: words picked by a small LCG. */
function textRun(i: number): Buffer {
  const out = Buffer.alloc(RUN_BYTES);
  let s = (i * 2654435761) >>> 0;
  let pos = 0;
  while (pos < RUN_BYTES) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    pos += out.write(`${WORDS[(s >>> 16) % WORDS.length]!} `, pos);
  }
  return out;
}

function makeRaw(path: string): void {
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  ftruncateSync(fd, VIRTUAL);
  const stride = VIRTUAL / RUNS;
  for (let i = 0; i < RUNS; i++) {
    const data = i % 2 === 0 ? randomRun(i) : textRun(i);
    writeSync(fd, data, 0, data.length, i * stride);
  }
  closeSync(fd);
  renameSync(tmp, path);
}

export function perfSet(dir = process.env.BENCH_PERF_DIR ?? '/var/tmp/dp-perf'): PerfSet {
  mkdirSync(dir, { recursive: true });
  const set: PerfSet = {
    dir,
    raw: join(dir, 'perf.raw'),
    qcow2: join(dir, 'perf.qcow2'),
    deflate: join(dir, 'perf.deflate.qcow2'),
    zstd: join(dir, 'perf.zstd.qcow2'),
  };
  if (!existsSync(set.raw)) makeRaw(set.raw);
  makeQcow2Variants(set);
  return set;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(perfSet());
