/**
 * pull of a local path that is not a readable file: a DiskpipeError naming the path and the
 * errno (exit 2, one line), never "internal error".
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskCache } from '../../src/cache/disk-cache.js';
import { DiskpipeError } from '../../src/errors.js';
import { diskpipe, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('pull and disk create of a directory: a clear EISDIR error', async () => {
  const notAFile = join(dir, 'not-a-file');
  mkdirSync(notAFile);
  const cache = join(dir, 'cache');
  for (const args of [
    ['pull', notAFile],
    ['disk', 'create', '--from', notAFile, join(dir, 'disk.raw')],
  ]) {
    const r = diskpipe(['--cache-dir', cache, ...args]);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `diskpipe: cannot open ${notAFile}: EISDIR: is a directory\n`);
  }
  await assert.rejects(new DiskCache({ dir: cache }).pull(notAFile), (err: unknown) => {
    assert.ok(err instanceof DiskpipeError, String(err));
    assert.match(err.message, /EISDIR/);
    return true;
  });
});
