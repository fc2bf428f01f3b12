/**
 * Coverage-guided fuzzing of every parser (`npm run fuzz`, not part of `npm test`): per target,
 * inputs from test/fuzz/corpus/<target>/ are mutated, and those that reach new blocks of
 * dist/src (V8 precise coverage) are mutated further. A crash (not a DiskpipeError), a hang
 * (too many reads, or no answer for FUZZ_HANG seconds) or an allocation beyond budget is saved
 * in test/fuzz/regressions/<target>/, which guided-regressions.test.ts replays in `npm test`.
 *
 * FUZZ_TARGETS=qcow2,vmdk   only these targets (default: all)
 * FUZZ_TIME=S               seconds per target (default 600)
 * FUZZ_EXECS=N              executions per target (default 100000); whichever ends first
 * FUZZ_HANG=S               seconds without a new execution that count as a hang (default 60)
 * FUZZ_SEED=S               another deterministic mutation sequence
 * FUZZ_FINDINGS=DIR         save findings there instead of test/fuzz/regressions
 * FUZZ_SAVE_CORPUS=1        add the inputs that reached new blocks (16 KiB or less, gzipped)
 *                           to test/fuzz/corpus
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/peers.js';
import { runGuided } from './guided/run.js';
import { REGRESSIONS_DIR } from './guided/seeds.js';
import { guidedTargets } from './guided/targets.js';

const env = process.env;
const wanted = env.FUZZ_TARGETS?.split(',').filter(Boolean);
const chosen = guidedTargets.filter((t) => !wanted || wanted.includes(t.name));
if (wanted && chosen.length !== wanted.length) {
  throw new Error(
    `unknown FUZZ_TARGETS; targets are ${guidedTargets.map((t) => t.name).join(',')}`,
  );
}
const settings = {
  execs: Number(env.FUZZ_EXECS ?? 100_000),
  seconds: Number(env.FUZZ_TIME ?? 600),
  hangSeconds: Number(env.FUZZ_HANG ?? 60),
  seed: env.FUZZ_SEED ?? 'diskpipe',
  findingsDir: env.FUZZ_FINDINGS ?? REGRESSIONS_DIR,
  memoryLimitBytes: 256 << 20,
  saveCorpus: env.FUZZ_SAVE_CORPUS === '1',
};
const root = tempDir('diskpipe-guided-');

for (const target of chosen) {
  test(`guided fuzz ${target.name}`, async (t) => {
    const r = await runGuided(target.name, join(root, target.name), settings);
    const line = `${target.name}: ${r.execs} executions in ${Math.round(r.seconds)} s, ${r.blocks} blocks covered, corpus ${r.corpus}, ${r.findings.length} findings`;
    t.diagnostic(line);
    console.log(line);
    for (const f of r.findings) t.diagnostic(`finding ${f.path}: ${f.failure}`);
    assert.equal(r.findings.length, 0, r.findings.map((f) => `${f.path}: ${f.failure}`).join('\n'));
  });
}
