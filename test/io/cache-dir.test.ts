/** The default cache directory from the environment the CLI passes (XDG Base Directory rules). */
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { defaultCacheDir } from '../../src/io/cache-dir.js';

test('cache dir: DISKPIPE_CACHE, else an absolute XDG_CACHE_HOME, else ~/.cache', () => {
  const home = join(homedir(), '.cache', 'diskpipe');
  assert.equal(defaultCacheDir({}), home);
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '/var/cache/u' }), '/var/cache/u/diskpipe');
  // The spec: a relative path in XDG_CACHE_HOME is invalid and is ignored.
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: 'rel/cache' }), home);
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '' }), home);
  assert.equal(defaultCacheDir({ DISKPIPE_CACHE: 'here', XDG_CACHE_HOME: '/x' }), resolve('here'));
});
