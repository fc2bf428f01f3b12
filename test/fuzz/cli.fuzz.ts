/**
 * Fuzz cases through the command line (`npm run fuzz`): a case the library refuses at open is
 * refused by `diskpipe info` and `diskpipe map` with the same one-line message and exit 2;
 * a case that fails later still fails as one line, never a stack trace. Hand-made cases are
 * in cli-refusals.test.ts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mixedRaw } from '../formats/vmdk-vdi-peer.js';
import { diskpipe, tempDir } from '../helpers/peers.js';
import { caseOptions, loadPlan, makeCase, writeCase } from './cases.js';
import { checkRefusal, refused } from './cli-contract.js';
import { exercise } from './exercise.js';
import { prepare } from './harness.js';
import { targets } from './targets.js';

const root = tempDir('diskpipe-fuzz-cli-');
const src = await mixedRaw(root, 'src.raw', 4 * 1024 * 1024 + 1536);

// Fuzz cases the library refuses at open must be refused by the CLI with the same message;
// cases that fail later must still fail as one line.
for (const name of ['vmdk-sparse', 'vdi', 'vhdx', 'qed-backing']) {
  test(`cli: fuzz cases of ${name} replayed through info and map`, async () => {
    const target = targets.find((t) => t.name === name)!;
    const workspace = join(root, 'fuzz');
    mkdirSync(workspace, { recursive: true });
    const prepared = await prepare(target, src, workspace);
    const { pristine, plan } = loadPlan(target, prepared);
    const wanted = new Set(['open', 'later']);
    for (let i = 0; i < 400 && wanted.size > 0; i++) {
      const c = makeCase(target, pristine, plan, 'cli', i);
      writeCase(prepared.casePath, c.bytes, prepared.allocated);
      const o = await exercise(prepared.casePath, caseOptions(c), c.rng, {
        readBytes: 8 << 20,
        zeroCheckBytes: 1 << 20,
      });
      assert.equal(o.failure, undefined, `case ${i}: ${c.steps.join('; ')}`);
      const kind = o.stage === 'open' ? 'open' : 'later';
      if (!o.code || !wanted.delete(kind)) continue;
      const path = join(prepared.dir, `case-${i}-${name}`);
      copyFileSync(prepared.casePath, path);
      const f = [...(c.format ? ['-f', c.format] : []), ...(c.untrusted ? ['--untrusted'] : [])];
      const what = `case ${i} (${c.steps.join('; ')}): ${o.message}`;
      if (kind === 'open') {
        for (const cmd of ['info', 'map']) {
          const msg = refused([cmd, '--json', ...f, path]);
          assert.equal(msg, o.message!.replaceAll(prepared.casePath, path), what);
        }
      } else {
        for (const cmd of ['info', 'map']) {
          const args = [cmd, ...f, path];
          const r = diskpipe(args);
          if (r.status !== 0) checkRefusal(args, r);
        }
      }
    }
    assert.equal(wanted.size, 0, `found no fuzz case failing at: ${[...wanted].join(', ')}`);
  });
}
