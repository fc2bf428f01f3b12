/**
 * Corpus and regression files of the guided fuzzer: gzip-compressed inputs (disk images are
 * mostly zeroes), one per file, named after their content so a seed found twice is kept once.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

/** test/fuzz in the source tree (this file runs from dist/test/fuzz/guided). */
const FUZZ_DIR = fileURLToPath(new URL('../../../../test/fuzz/', import.meta.url));
export const CORPUS_DIR = join(FUZZ_DIR, 'corpus');
export const REGRESSIONS_DIR = join(FUZZ_DIR, 'regressions');

export interface Seed {
  name: string;
  bytes: Uint8Array;
}

/** The seeds of one target in `dir/<target>/` (none when the directory does not exist). */
export function loadSeeds(dir: string, target: string): Seed[] {
  const d = join(dir, target);
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .filter((n) => n.endsWith('.gz'))
    .sort()
    .map((name) => ({ name, bytes: new Uint8Array(gunzipSync(readFileSync(join(d, name)))) }));
}

/** Stores `bytes` in `dir/<target>/`, named `<label>-<hash>.gz`; returns the path. */
export function saveSeed(dir: string, target: string, label: string, bytes: Uint8Array): string {
  const d = join(dir, target);
  mkdirSync(d, { recursive: true });
  const hash = createHash('sha1').update(bytes).digest('hex').slice(0, 12);
  const path = join(d, `${label}-${hash}.gz`);
  if (!existsSync(path)) writeFileSync(path, gzipSync(bytes, { level: 9 }));
  return path;
}
