/**
 * Mutation fuzzing of every format reader (`npm run fuzz`, not part of `npm test`): truncated,
 * corrupted and hostile variants of real images must fail with a DiskpipeError (or open and
 * keep the extent contract), never crash, hang, allocate without bound, leak a file or open
 * one outside the trust rule. What it finds becomes a case in regressions.test.ts.
 *
 * DISKPIPE_FUZZ_ITERATIONS=N   cases per target (default 60; refused formats fewer)
 * DISKPIPE_FUZZ_SEED=S         another deterministic run
 * DISKPIPE_FUZZ_CASE=T:I       only case I of target T (as a failure report prints)
 * DISKPIPE_FUZZ_KEEP=DIR       copy failing case files there
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mixedRaw } from '../formats/vmdk-vdi-peer.js';
import { tempDir } from '../helpers/peers.js';
import { describeFailure, fuzz, prepare, settingsFromEnv } from './harness.js';
import { targets } from './targets.js';

const settings = settingsFromEnv();
const root = tempDir('diskpipe-fuzz-');
const src = await mixedRaw(root, 'src.raw', 4 * 1024 * 1024 + 1536);
const chosen = targets.filter((t) => !settings.only || t.name === settings.only.target);
if (settings.only && chosen.length === 0) throw new Error(`no fuzz target ${settings.only.target}`);

for (const target of chosen) {
  test(`fuzz ${target.name}`, async (t) => {
    const prepared = await prepare(target, src, root);
    const count = Math.max(10, Math.round(settings.iterations * (target.weight ?? 1)));
    const [first, end] = settings.only ? [settings.only.i, settings.only.i + 1] : [0, count];
    const r = await fuzz(target, prepared, first, end, settings);
    const codes = Object.entries(r.codes)
      .map(([c, n]) => `${c} ${n}`)
      .join(', ');
    t.diagnostic(
      `${r.cases} cases: ${r.opened} opened, errors: ${codes || 'none'}; slowest ${Math.round(r.slowestMs)} ms, memory +${Math.round(r.maxMemory / 2 ** 20)} MiB`,
    );
    for (const line of r.log) t.diagnostic(line);
    assert.equal(r.cases, end - first, 'every case ran');
    assert.equal(
      r.failures.length,
      0,
      `\n${r.failures.slice(0, 10).map(describeFailure).join('\n')}`,
    );
  });
}
