import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const allowed = tempDir();
const base = join(allowed, 'base.raw');
const overlay = join(dir, 'overlay.qcow2');
await qemuImg('create', '-f', 'raw', base, '1M');
await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay);

test('stdin: a plain qcow2 on stdin may not follow its backing reference', () => {
  const input = readFileSync(overlay);
  // The same file named on the command line is allowed to (the backing dir is allowed).
  const named = diskpipe(['info', '--allow-backing', allowed, overlay]);
  assert.equal(named.status, 0, named.stderr);
  for (const args of [
    ['map', '-'],
    ['map', '--allow-backing', allowed, '-'],
  ]) {
    const r = diskpipe(args, { input, env: { DISKPIPE_CACHE: allowed } });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /^diskpipe: backing file reference '.*base\.raw' refused: .*untrusted/);
  }
  // info shows the image and names the refusal, without opening the backing file.
  const r = diskpipe(['info', '--allow-backing', allowed, '-'], {
    input,
    env: { DISKPIPE_CACHE: allowed },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\(not opened: backing file reference '.*base\.raw' refused: .*untrusted/);
});
