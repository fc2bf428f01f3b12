/**
 * The perf set of issue 11: a 6 GiB virtual disk with 48 runs of 32 MiB spread evenly,
 * alternating AES-CTR random (incompressible) and text (compressible) data, then qcow2,
 * deflate-compressed qcow2, zstd-compressed qcow2 and streamOptimized vmdk made by qemu-img.
 * Beside it a real Linux file system: ext4 filled from this machine's files (mkfs.ext4 -d,
 * no root needed) with the same four conversions. Built once into BENCH_PERF_DIR (default
 * /var/tmp/dp-perf) and reused. `node dist/bench/perf-set.js` builds it.
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
import { GiB, MiB, timed } from './util.js';

export interface PerfSet {
  dir: string;
  raw: string;
  qcow2: string;
  deflate: string;
  zstd: string;
  /** streamOptimized vmdk (deflate grains), as VMware/OVA exports ship. */
  vmdk: string;
}

/**
 * The root file system image: BENCH_ROOTFS_FROM (default /usr/lib/x86_64-linux-gnu, ~0.7 GiB
 * of shared libraries, or /usr/lib where it does not exist) copied into a new ext4 file system
 * of BENCH_ROOTFS_GIB (default 4) GiB.
 */
export const ROOTFS_FROM = process.env.BENCH_ROOTFS_FROM ?? '/usr/lib/x86_64-linux-gnu';
const ROOTFS_GIB = Number(process.env.BENCH_ROOTFS_GIB ?? 4);

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

/** A real ext4 file system filled from this machine's files (mkfs.ext4 -d needs no root). */
function makeRootfs(path: string): void {
  const from = existsSync(ROOTFS_FROM) ? ROOTFS_FROM : '/usr/lib';
  const tmp = `${path}.partial`;
  console.error(`generating ${path} (ext4 of ${ROOTFS_GIB} GiB from ${from})...`);
  timed('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', from, tmp, `${ROOTFS_GIB}G`]);
  renameSync(tmp, path);
}

/** The streamOptimized vmdk of `raw`, made once by qemu-img. */
function makeStreamVmdk(raw: string, path: string): void {
  if (existsSync(path)) return;
  console.error(`generating ${path} with qemu-img...`);
  const opts = ['-o', 'subformat=streamOptimized'];
  timed('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', ...opts, raw, `${path}.partial`]);
  renameSync(`${path}.partial`, path);
}

function variants(dir: string, stem: string): PerfSet {
  return {
    dir,
    raw: join(dir, `${stem}.raw`),
    qcow2: join(dir, `${stem}.qcow2`),
    deflate: join(dir, `${stem}.deflate.qcow2`),
    zstd: join(dir, `${stem}.zstd.qcow2`),
    vmdk: join(dir, `${stem}.stream.vmdk`),
  };
}

export function perfSet(dir = process.env.BENCH_PERF_DIR ?? '/var/tmp/dp-perf'): PerfSet {
  mkdirSync(dir, { recursive: true });
  const set = variants(dir, 'perf');
  if (!existsSync(set.raw)) makeRaw(set.raw);
  makeQcow2Variants(set);
  makeStreamVmdk(set.raw, set.vmdk);
  return set;
}

/** The root file system image and its conversions, in the perf set's directory. */
export function rootfsSet(dir = process.env.BENCH_PERF_DIR ?? '/var/tmp/dp-perf'): PerfSet {
  mkdirSync(dir, { recursive: true });
  const set = variants(dir, 'rootfs');
  if (!existsSync(set.raw)) makeRootfs(set.raw);
  makeQcow2Variants(set);
  makeStreamVmdk(set.raw, set.vmdk);
  return set;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(perfSet(), rootfsSet());
