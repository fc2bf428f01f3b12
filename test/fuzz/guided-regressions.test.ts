/**
 * Replays every input the guided fuzzer saved in test/fuzz/regressions/<target>/ (crashes,
 * hangs, allocations beyond budget it found): each must now be read or refused properly. No
 * clock: a hang is bounded by the targets' read budget.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tempDir } from '../helpers/peers.js';
import { loadSeeds, REGRESSIONS_DIR } from './guided/seeds.js';
import { Context, guidedTargets, resetReads } from './guided/targets.js';

const ctx = new Context(tempDir('diskpipe-guided-replay-'));
process.env.DISKPIPE_TMPDIR = ctx.dir;

for (const target of guidedTargets) {
  const seeds = loadSeeds(REGRESSIONS_DIR, target.name);
  for (const seed of seeds) {
    test(`guided regression ${target.name}/${seed.name}`, async () => {
      resetReads();
      assert.equal(await target.run(seed.bytes, ctx), undefined);
    });
  }
}
test('guided regressions: close the peers', async () => {
  await ctx.close();
});
