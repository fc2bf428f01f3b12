/**
 * `info` of a local image whose backing file lies outside the trusted directories prints the
 * image and names the refused reference (DESIGN, trust rule); commands that read data refuse.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';

test('info names a backing file outside the trusted directories; convert and map refuse', async () => {
  const elsewhere = tempDir('diskpipe-elsewhere-');
  const dir = tempDir();
  const base = join(elsewhere, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '1M');
  mkdirSync(join(dir, 'vm'));
  const top = join(dir, 'vm', 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);

  const human = diskpipe(['info', top]);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`backing file: ${base}\\n  \\(not opened: .*outside`));
  const json = diskpipe(['info', '--output=json', top]);
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.equal(parsed['backing-filename'], base);
  assert.match(String(parsed['backing-refused']), /--allow-backing/);
  assert.equal(diskpipe(['info', '--backing-chain', top]).status, 0);

  for (const args of [
    ['convert', top, join(dir, 'out.raw')],
    ['map', top],
    ['checksum', top],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^diskpipe: backing file .* is outside/);
  }
  // Allowed, the chain opens and info shows no refusal.
  const allowed = diskpipe(['info', '--json', '--allow-backing', elsewhere, top]);
  assert.equal(allowed.status, 0, allowed.stderr);
  assert.equal(JSON.parse(allowed.stdout)['backing-refused'], undefined);
});
