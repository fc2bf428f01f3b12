/**
 * Common flags (-q, --cache-dir, the trust flags) are accepted "before or after the command"
 * (DESIGN's CLI contract), also between a command group and its subcommand: `cache -q ls`,
 * `disk --cache-dir DIR create ...`.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('common flags between a group and its subcommand', async () => {
  const cache = join(dir, 'cache');
  const src = join(dir, 'src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '1M');
  const dest = join(dir, 'disk.raw');
  const made = diskpipe(['disk', '--cache-dir', cache, '-q', 'create', '--from', src, dest]);
  assert.equal(made.status, 0, made.stderr);
  assert.equal(made.stdout, '', '-q: nothing printed');
  assert.ok(existsSync(dest));
  const ls = diskpipe(['cache', `--cache-dir=${cache}`, 'ls', '--json']);
  assert.equal(ls.status, 0, ls.stderr);
  assert.equal(JSON.parse(ls.stdout).length, 1);
  const quiet = diskpipe(['cache', '-q', 'ls', '--cache-dir', cache]);
  assert.equal(quiet.status, 0, quiet.stderr);
  assert.equal(quiet.stdout, '');
  // Still a usage error: no subcommand after the flags.
  const none = diskpipe(['cache', '-q']);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /^diskpipe: usage: diskpipe cache ls/);
});
