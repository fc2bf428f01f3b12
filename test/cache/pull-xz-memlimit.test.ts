/**
 * The xz memory limit (DISKPIPE_XZ_MEMLIMIT, the xzMemoryLimit option) holds for every xz
 * decode of a pull: the one that follows the download (overlap.ts) and the one after it (a
 * local file). A .xz whose dictionary needs more fails cleanly, naming the limit; the overlap
 * path used to decode with the default 256 MiB.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DiskCache, UnsupportedFeatureError } from '../../src/index.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipeAsync, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-xz-memlimit-');
const server = await startServer();
after(() => server.close());

// 1 MiB raw compressed with a 32 MiB dictionary (from stdin: xz cannot shrink it to the input).
const raw = Buffer.concat([randomBytes(512 * 1024), Buffer.alloc(512 * 1024, 'x')]);
const xzPath = join(dir, 'disk.raw.xz');
writeFileSync(
  xzPath,
  execFileSync('xz', ['-c', '-T1', '--lzma2=preset=6,dict=32MiB'], { input: raw }),
);
server.files.set('disk.raw.xz', { path: xzPath });
let n = 0;
const freshCache = () => join(dir, `cache-${n++}`);
const LIMIT = /needs \d+ MiB of memory .* over the limit of 4 MiB \(DISKPIPE_XZ_MEMLIMIT/;

test('library: xzMemoryLimit holds for a pull over HTTP (overlap) and of a local file', async () => {
  for (const source of [server.url('disk.raw.xz'), xzPath]) {
    const cacheDir = freshCache();
    const cache = new DiskCache({ dir: cacheDir, xzMemoryLimit: 4 * MiB });
    await assert.rejects(cache.pull(source), (e: Error) => {
      assert.ok(e instanceof UnsupportedFeatureError, `${source}: ${e.stack}`);
      assert.match(e.message, LIMIT);
      return true;
    });
    // Nothing was recorded; the default limit then decodes it.
    const ok = await new DiskCache({ dir: cacheDir }).pull(source);
    assert.equal(ok.record.virtualSize, raw.length, source);
    assert.equal(ok.record.compression, 'xz');
  }
});

test('CLI: DISKPIPE_XZ_MEMLIMIT holds for pull over HTTP and leaves no temporary file', async () => {
  const cacheDir = freshCache();
  const r = await diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url('disk.raw.xz')], {
    env: { DISKPIPE_XZ_MEMLIMIT: '4M' },
  }).done;
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, LIMIT);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  const leftovers = readdirSync(join(cacheDir, 'tmp'), { recursive: true });
  assert.deepEqual(
    leftovers.filter((f) => !String(f).endsWith('.part') && !String(f).endsWith('.lock')),
    [],
  );
});
