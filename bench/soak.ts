/**
 * `npm run soak`: the cache's kill -9 matrix (SOAK_RUNS pulls, default 200, killed at random
 * points over a whole pull and pulled again) and concurrency matrix (SOAK_ROUNDS rounds,
 * default 30, of prune/rm/pull/disk create racing), against a local HTTP server. Prints one
 * table; exits 1 if any failure column is not 0. SOAK_SEED replays a run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  concurrencyMatrix,
  emptyCounts,
  formatTable,
  killMatrix,
  soakImages,
} from '../test/helpers/soak.js';

const runs = Number(process.env.SOAK_RUNS ?? 200);
const rounds = Number(process.env.SOAK_ROUNDS ?? 30);
const seed = Number(process.env.SOAK_SEED ?? Date.now() % 100_000);
const dir = mkdtempSync(join(tmpdir(), 'diskpipe-soak-'));
// 6 MiB/s: a 3 MiB download lasts about half a second, so kills land in every phase.
const images = await soakImages(dir, 6 * 1024 * 1024);
try {
  const counts = emptyCounts();
  const t0 = performance.now();
  await killMatrix(images, runs, seed, counts);
  const killSeconds = (performance.now() - t0) / 1000;
  const killRuns = counts.runs;
  await concurrencyMatrix(images, rounds, seed, counts);
  const raceSeconds = (performance.now() - t0) / 1000 - killSeconds;
  console.log(
    `diskpipe soak (seed ${seed}): ${killRuns} kill -9 runs (qcow2, deflate qcow2, xz raw) in ${killSeconds.toFixed(0)} s, ${counts.runs - killRuns} concurrency rounds in ${raceSeconds.toFixed(0)} s`,
  );
  console.log(formatTable(counts));
  for (const p of counts.problems.slice(0, 50)) console.log(`  ${p}`);
  const failed =
    counts.corruptRecords + counts.failedResumes + counts.leftoverTemporaries + counts.brokenDisks;
  process.exitCode = failed === 0 ? 0 : 1;
} finally {
  await images.close();
  rmSync(dir, { recursive: true, force: true });
}
