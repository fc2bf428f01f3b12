/**
 * One fuzz case from its number: the mutation plan of a prepared target, the mutated bytes
 * (checksums fixed up most of the time), the format to force if any, and the case file
 * written with the pristine image's holes.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { OpenOptions } from '../../src/open.js';
import {
  hashSeed,
  hostileReferences,
  type MutationPlan,
  mutate,
  Rng,
  type Span,
} from './mutate.js';
import { referencesIn, type Target } from './targets.js';

/** What `prepare` leaves for the cases of one target. */
export interface Prepared {
  /** The directory the image may reference files in (the trust rule's own tree). */
  dir: string;
  /** The pristine image, and the path each case is written to (the image's own name). */
  pristine: string;
  casePath: string;
  /** Names of the other files in `dir` (references to them are searched in the image). */
  siblings: string[];
  /** File ranges holding no guest data, from qemu-img map. */
  meta: Span[];
  /** Allocated ranges of the pristine file. */
  allocated: Span[];
}

/** The open options a case uses. */
export function caseOptions(c: Case): OpenOptions {
  return { ...(c.format ? { format: c.format } : {}), ...(c.untrusted ? { untrusted: true } : {}) };
}

export interface Case {
  i: number;
  seed: number;
  bytes: Uint8Array;
  steps: string[];
  /** `-f` for this case (undefined: probe). */
  format: string | undefined;
  /** Open as an untrusted image (no references to other files at all). */
  untrusted: boolean;
  /** The case's PRNG, for the random ranges the exercise picks. */
  rng: Rng;
}

export function loadPlan(target: Target, p: Prepared): { pristine: Buffer; plan: MutationPlan } {
  const pristine = readFileSync(p.pristine);
  const plan: MutationPlan = {
    hot: target.hot ? target.hot(pristine) : [{ start: 0, end: 64 * 1024 }],
    meta: p.meta,
    refs: referencesIn(pristine, p.siblings),
    bigEndian: target.bigEndian ?? false,
    text: target.words !== undefined,
    words: target.words ?? [],
    hostile: (length) => hostileReferences(length, basename(p.casePath)),
  };
  return { pristine, plan };
}

export function makeCase(
  target: Target,
  pristine: Uint8Array,
  plan: MutationPlan,
  baseSeed: string,
  i: number,
): Case {
  const seed = hashSeed(`${baseSeed}/${target.name}/${i}`);
  const rng = new Rng(seed);
  const { bytes, steps } = mutate(pristine, plan, rng);
  if (target.fixup && rng.chance(0.85)) {
    target.fixup(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
    steps.push('fix checksums');
  }
  // Sometimes name the format (-f), so readers also meet images whose magic was destroyed.
  let format = target.format;
  if (!format && rng.chance(0.2)) {
    format = target.name.split('-')[0];
    steps.push(`-f ${format}`);
  }
  const untrusted = rng.chance(0.1);
  if (untrusted) steps.push('--untrusted');
  return { i, seed, bytes, steps, format, untrusted, rng };
}

/** Writes a case file, leaving holes where the pristine file has them and bytes are zero. */
export function writeCase(path: string, bytes: Uint8Array, allocated: Span[]): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, bytes.length);
    const block = 4096;
    let ai = 0;
    for (let at = 0; at < bytes.length; at += block) {
      const end = Math.min(bytes.length, at + block);
      while (ai < allocated.length && allocated[ai]!.end <= at) ai++;
      const a = allocated[ai];
      const inPristine = a !== undefined && a.start < end;
      if (!inPristine && bytes.subarray(at, end).every((b) => b === 0)) continue;
      writeSync(fd, bytes, at, end - at, at);
    }
  } finally {
    closeSync(fd);
  }
}
