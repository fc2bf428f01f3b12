/**
 * A read-only image (no write bit, as the cache's blobs and chmod a-w golden images) is never
 * edited in place, even by root: resize, rebase, convert -n and serve --writable refuse it, as
 * commit does for its base.
 */
import assert from 'node:assert/strict';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';
import { startServe } from '../nbd/helpers.js';

const dir = tempDir();

test('in-place edits refuse an image without write permission bits', async () => {
  const raw = join(dir, 'golden.raw');
  await qemuImg('create', '-f', 'raw', raw, '4M');
  await qemuIo(raw, ['write -P 0x5a 0 1M'], 'raw');
  const qcow2 = join(dir, 'golden.qcow2');
  await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
  const other = join(dir, 'other.raw');
  await qemuImg('create', '-f', 'raw', other, '4M');
  chmodSync(raw, 0o444);
  chmodSync(qcow2, 0o444);
  const before = [readFileSync(raw), readFileSync(qcow2)];
  for (const args of [
    ['resize', raw, '8M'],
    ['resize', qcow2, '8M'],
    ['rebase', '-u', '-b', 'golden.raw', '-F', 'raw', qcow2],
    ['convert', '-n', other, raw],
    ['convert', '-n', '-O', 'qcow2', other, qcow2],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^diskpipe: .*golden\.(raw|qcow2).* read-only.*\n$/);
  }
  const started = await startServe(['--writable', '--socket', join(dir, 'rw.sock'), raw]).then(
    async (served) => {
      await served.stop();
      return 'listening';
    },
    (err: Error) => err.message,
  );
  assert.match(started, /serve exited 2: diskpipe: .*read-only/);
  assert.deepEqual([readFileSync(raw), readFileSync(qcow2)], before);
  // With the write bit back, the same edit works.
  chmodSync(raw, 0o644);
  assert.equal(diskpipe(['resize', raw, '8M']).status, 0);
});
