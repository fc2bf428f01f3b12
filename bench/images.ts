/**
 * Bench inputs that look like real disks: an 8 GiB virtual disk with ~2 GiB of data in
 * scattered runs (64 KiB – 32 MiB), the data a mix of incompressible blocks, text-like
 * compressible blocks and some all-zero 4 KiB blocks. Made once and reused (same seed).
 * Variants: raw, qcow2, deflate-compressed qcow2, zstd-compressed qcow2 (made by qemu-img).
 */
import { randomFillSync } from 'node:crypto';
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
import { GiB, MiB, timed } from './util.js';

export interface BenchImages {
  dir: string;
  raw: string;
  qcow2: string;
  deflate: string;
  zstd: string;
  dataBytes: number;
}

/** A small deterministic generator (the layout must not change between runs). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const WORDS = 'the of disk image cluster sector boot kernel root usr lib share cache data block '
  .repeat(4)
  .split(' ');

function textBlock(r: () => number, size: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const w = WORDS[Math.floor(r() * WORDS.length)]!;
    parts.push(w);
    n += w.length + 1;
  }
  return Buffer.from(parts.join(' ')).subarray(0, size);
}

/** Fills a run: 1 MiB pieces, each random (40%), text (45%) or text with zero blocks. */
function fillRun(buf: Buffer, r: () => number, text: Buffer): void {
  for (let pos = 0; pos < buf.length; pos += MiB) {
    const piece = buf.subarray(pos, Math.min(pos + MiB, buf.length));
    const kind = r();
    if (kind < 0.4) randomFillSync(piece);
    else {
      const start = Math.floor(r() * (text.length - piece.length));
      text.copy(piece, 0, start, start + piece.length);
      if (kind > 0.85) {
        for (let z = 0; z < piece.length; z += 16 * 4096)
          piece.fill(0, z, Math.min(z + 4096, piece.length));
      }
    }
  }
}

function makeRaw(path: string, virtual: number, data: number): number {
  const r = rng(42);
  const text = textBlock(r, 8 * MiB);
  // Log-uniform run lengths, 64 KiB aligned, until the data target is met.
  const runs: number[] = [];
  let total = 0;
  while (total < data) {
    const len = Math.min(data - total, Math.round(2 ** (16 + r() * 9) / 65536) * 65536 || 65536);
    runs.push(len);
    total += len;
  }
  const gapTotal = virtual - total;
  const weights = runs.map(() => r());
  const wsum = weights.reduce((a, b) => a + b, 0);
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  ftruncateSync(fd, virtual);
  let pos = 0;
  const buf = Buffer.alloc(32 * MiB);
  runs.forEach((len, i) => {
    pos += Math.floor(((weights[i]! / wsum) * gapTotal) / 65536) * 65536;
    const chunk = buf.subarray(0, len);
    fillRun(chunk, r, text);
    writeSync(fd, chunk, 0, len, pos);
    pos += len;
  });
  closeSync(fd);
  renameSync(tmp, path);
  return total;
}

export function benchImages(dir: string, dataMiB: number): BenchImages {
  mkdirSync(dir, { recursive: true });
  const tag = `8g-${dataMiB}m`;
  const img: BenchImages = {
    dir,
    raw: join(dir, `${tag}.raw`),
    qcow2: join(dir, `${tag}.qcow2`),
    deflate: join(dir, `${tag}.deflate.qcow2`),
    zstd: join(dir, `${tag}.zstd.qcow2`),
    dataBytes: dataMiB * MiB,
  };
  if (!existsSync(img.raw)) {
    console.error(`generating ${img.raw} (8 GiB virtual, ${dataMiB} MiB data)...`);
    makeRaw(img.raw, 8 * GiB, dataMiB * MiB);
  }
  makeQcow2Variants(img);
  return img;
}

/**
 * Makes the qcow2, deflate-compressed and zstd-compressed qcow2 copies of `raw` with qemu-img,
 * once (kept between runs; written under a .partial name and renamed when complete).
 */
export function makeQcow2Variants(img: {
  raw: string;
  qcow2: string;
  deflate: string;
  zstd: string;
}): void {
  const variants: [string, string[]][] = [
    [img.qcow2, []],
    [img.deflate, ['-c']],
    [img.zstd, ['-c', '-o', 'compression_type=zstd']],
  ];
  for (const [path, flags] of variants) {
    if (existsSync(path)) continue;
    console.error(`generating ${path} with qemu-img...`);
    timed('qemu-img', [
      'convert',
      '-f',
      'raw',
      '-O',
      'qcow2',
      ...flags,
      img.raw,
      `${path}.partial`,
    ]);
    renameSync(`${path}.partial`, path);
  }
}
