/**
 * Fuzz cases through the command line (`npm run fuzz`): a case the library refuses at open is
 * refused by `diskpipe map` with the same one-line message and exit 2, and by `diskpipe info`
 * too unless the refusal is of a backing file reference: info then describes the image, exits
 * 0 and names the refusal (`backing-refused`, the trust rule in README). A case that fails
 * later still fails as one line, never a stack trace. Hand-made cases are in
 * cli-refusals.test.ts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type OpenOptions, openImage } from '../../src/open.js';
import { describeChain } from '../../src/ops/info.js';
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
        const atPath = (m: string) => m.replaceAll(prepared.casePath, path);
        assert.equal(refused(['map', '--json', ...f, path]), atPath(o.message!), what);
        const info = ['info', '--json', ...f, path];
        const backingRefused = await describedRefusal(prepared.casePath, caseOptions(c));
        if (backingRefused === undefined) assert.equal(refused(info), atPath(o.message!), what);
        else {
          assert.equal(backingRefused, o.message, what);
          const r = diskpipe(info);
          assert.equal(r.status, 0, `${what}\n${r.stderr}`);
          assert.equal(JSON.parse(r.stdout)['backing-refused'], atPath(o.message!), what);
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

/** What `info` reports as a refused backing file for this case (undefined: info refuses it). */
async function describedRefusal(path: string, opts: OpenOptions): Promise<string | undefined> {
  let image: Awaited<ReturnType<typeof openImage>>;
  try {
    image = await openImage(path, { ...opts, describeOnly: true });
  } catch {
    return undefined;
  }
  try {
    const [top] = await describeChain(image, path);
    assert.ok(top?.backingRefused !== undefined, 'opens to describe but not to read');
    return top.backingRefused;
  } finally {
    await image.close();
  }
}
