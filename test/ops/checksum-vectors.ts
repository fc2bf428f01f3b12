/**
 * blkhash test vectors (sha256, 64 KiB blocks, from BLKHASH.md) and an independent reference:
 * a plain transcription of the construction, with no zero shortcut and no streaming.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { sparseFile } from '../helpers/peers.js';

/** `length` bytes of `byte`; `zero` ranges are given as zero ranges (no data). */
export interface Segment {
  byte: number;
  length: number;
  zero?: boolean;
}

export interface Vector {
  name: string;
  segments: Segment[];
  digest: string;
  algorithm?: string;
}

const h = 32768;
const K = 65536;
const GiB = 1024 ** 3;
const d = (c: string, n: number): Segment => ({ byte: c.charCodeAt(0), length: n });
const nul = (n: number): Segment => ({ byte: 0, length: n });
const z = (n: number): Segment => ({ byte: 0, length: n, zero: true });

export const VECTORS: Vector[] = [
  {
    name: 'block_data',
    segments: [d('A', K)],
    digest: '2e3a5f57d5e726ee5de62db1a85ff816f4fa6ea4627807d9a51bdc4c883e165e',
  },
  {
    name: 'block_zero',
    segments: [nul(K)],
    digest: '8ab067ab7939a3d4f40cbb118956c07c06aeae2d075d6e0a2ebbb94bd42832af',
  },
  {
    name: 'block_zero (zero range)',
    segments: [z(K)],
    digest: '8ab067ab7939a3d4f40cbb118956c07c06aeae2d075d6e0a2ebbb94bd42832af',
  },
  {
    name: 'partial_block_data',
    segments: [d('A', h)],
    digest: '9467334d6d7668a2f06898185b5cddc78cdfbd962f50c6bf250101f03a0e54dc',
  },
  {
    name: 'partial_block_zero',
    segments: [nul(h)],
    digest: '842d185f0ff348b0d689e184bddc47f69a19032a6934c89b879479f1e86f9d56',
  },
  {
    name: 'partial_block_zero (zero range)',
    segments: [z(h)],
    digest: '842d185f0ff348b0d689e184bddc47f69a19032a6934c89b879479f1e86f9d56',
  },
  {
    name: 'zero',
    segments: [nul(8 * K)],
    digest: '722ac11a3a81034edf196aa3ee68d1a2e345cd0838b0c78c2ce2fb015d4d817d',
  },
  {
    name: 'zero_unaligned',
    segments: [nul(8 * K + h)],
    digest: 'e623a5702b1feb08fbb3d18e35bbb7ec10146b8cd1bcff811200a3948c78c55c',
  },
  {
    name: 'large_zero',
    segments: [z(GiB)],
    digest: 'c6d6562c3074a2caa0ceea3e1f460f3af678c792ed05e64157eb51e68ae5260d',
  },
  {
    name: 'full',
    segments: [d('A', h), d('B', h), d('C', h), d('D', h), d('E', h), d('F', h)],
    digest: '4ab1586084326f5beb911621282e9557cd26856105eff7f78cace5986af4738b',
  },
  {
    name: 'full_unaligned',
    segments: [d('A', h), d('B', h), d('C', h), d('D', h), d('E', h)],
    digest: '2cad558b3a2a8d87435e80fe7bae69fa664d92eaa1b9411f573b9fbb412a4d43',
  },
  {
    name: 'mix',
    segments: [d('A', h), z(h), z(h), nul(h), d('E', h), z(h), z(h), nul(h)],
    digest: '4b2b5acd96f8105f4fb26abaf35c7c5756338ef9ccce19ffe7714c9ad94b4398',
  },
  {
    name: 'mix_unaligned',
    segments: [d('A', h), z(h), z(h), nul(h), d('E', h), z(h), z(h)],
    digest: '2510ac29c7103f2e68c672d728cbd43db4ed3dc809a24cde96e62dc5862a0f57',
  },
  {
    name: 'empty',
    segments: [],
    digest: 'af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc',
  },
  {
    name: 'u_1mib',
    segments: [{ byte: 0x55, length: 1024 * 1024 }],
    digest: '7d87be6e2ef6f31e5c70bbcabe1b629ea8318c51f31d38f8a8bc8c184a0fb4b8',
  },
  {
    name: 'zero_8gib',
    segments: [z(8 * GiB)],
    digest: 'd920651945bcb2988b18096d466a49a393ea01d0331a6a86792fe6a0f25fec4c',
  },
  {
    name: 'empty_sha1',
    segments: [],
    digest: '05fe405753166f125559e7c9ac558654f107c7e9',
    algorithm: 'sha1',
  },
];

export const Z_SHA256_64K = 'de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31';

export function vector(name: string): Vector {
  const v = VECTORS.find((x) => x.name === name);
  if (!v) throw new Error(`no vector ${name}`);
  return v;
}

export function totalLength(segments: Segment[]): number {
  return segments.reduce((n, s) => n + s.length, 0);
}

/** The bytes of small segment lists, zero ranges included as zero bytes. */
export function materialize(segments: Segment[]): Buffer {
  return Buffer.concat(segments.map((s) => Buffer.alloc(s.length, s.byte)));
}

/** The construction exactly as specified: every block hashed, then LE64(L). */
export function referenceBlkhash(
  data: Uint8Array,
  algorithm = 'sha256',
  blockSize = 65536,
): string {
  const outer = createHash(algorithm);
  for (let off = 0; off < data.length; off += blockSize) {
    outer.update(
      createHash(algorithm)
        .update(data.subarray(off, off + blockSize))
        .digest(),
    );
  }
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(data.length));
  return outer.update(len).digest('hex');
}

/** A small deterministic PRNG (mulberry32), so failures can be replayed. */
export function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** A sparse file of `size` bytes holding `pieces` (offset, bytes); the rest is holes. */
export function writeSparse(path: string, size: number, pieces: [number, Uint8Array][]): string {
  sparseFile(path, size);
  const fd = openSync(path, 'r+');
  for (const [offset, data] of pieces) writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
  return path;
}

/** A raw file with a vector's bytes, its zero segments left as holes. */
export function writeVectorFile(path: string, v: Vector): string {
  const pieces: [number, Uint8Array][] = [];
  let pos = 0;
  for (const s of v.segments) {
    if (!s.zero) pieces.push([pos, Buffer.alloc(s.length, s.byte)]);
    pos += s.length;
  }
  return writeSparse(path, pos, pieces);
}
