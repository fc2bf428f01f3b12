/**
 * Compressed downloads (raw.xz, raw.gz) are decompressed, written sparse and hashed while they
 * arrive: the server pauses half-way and the converter has written bytes by then (decided by
 * events: the pause ends only once conversion has started, so a busy machine changes nothing).
 * A kill -9 in that overlapped phase leaves no record, and the next pull resumes with Range.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CacheLayout } from '../../src/cache/layout.js';
import { pull } from '../../src/cache/pull.js';
import { CacheIndex } from '../../src/cache/records.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, diskpipeAsync, diskWithRandomRuns, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-overlap-stream-');
const server = await startServer();
after(() => server.close());

// 64 MiB disk, 8 MiB of incompressible data in two places: the .xz/.gz are ≈ 8 MiB.
const raw = diskWithRandomRuns(join(dir, 'disk.raw'), 64 * MiB, [3 * MiB, 40 * MiB], 4 * MiB);
execFileSync('xz', ['-T1', '-0', '-k', raw]);
execFileSync('sh', ['-c', `gzip -1 -c '${raw}' > '${raw}.gz'`]);
for (const ext of ['xz', 'gz']) server.files.set(`disk.raw.${ext}`, { path: `${raw}.${ext}` });
const expected = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;
let n = 0;
const freshCache = () => join(dir, `cache-${n++}`);
const sentOf = (start: number, name: string) =>
  server.log.slice(start).reduce((s, e) => (e.path === `/${name}` ? s + e.sent : s), 0);

/** Pauses every answer at `at` bytes until the returned release() is called. */
function pauseDownloadsAt(at: number): () => void {
  let release!: () => void;
  server.behaviour.pauseAt = at;
  server.behaviour.resume = new Promise<void>((r) => {
    release = r;
  });
  return () => {
    server.behaviour.pauseAt = undefined;
    server.behaviour.resume = undefined;
    release();
  };
}

for (const [ext, compression] of [
  ['xz', 'xz'],
  ['gz', 'gzip'],
] as const) {
  const name = `disk.raw.${ext}`;
  const size = statSync(join(dir, name)).size;

  test(`overlap: a raw.${ext} download is decompressed and written before it ends`, async () => {
    const cacheDir = freshCache();
    const pausedAt = Math.floor(size / 2);
    const release = pauseDownloadsAt(pausedAt);
    const start = server.log.length;
    let sentAtFirstWrite: number | undefined;
    let convertedAtPause = 0;
    try {
      const r = await pull(server.url(name), {
        cacheDir,
        onProgress: ({ phase, done }) => {
          if (phase === 'convert' && done > 0 && sentAtFirstWrite === undefined) {
            sentAtFirstWrite = sentOf(start, name);
            convertedAtPause = done;
            release();
          }
        },
      });
      assert.equal(r.record.contentDigest, expected);
      assert.equal(r.record.compression, compression);
      assert.equal(r.record.virtualSize, 64 * MiB);
      // Only the data was written to the cache: zero blocks stay holes.
      assert.ok(r.written <= size + 8 * MiB + MiB, `wrote ${r.written} bytes`);
    } finally {
      release();
    }
    assert.ok(sentAtFirstWrite !== undefined);
    assert.ok(sentAtFirstWrite <= pausedAt, `first write after ${sentAtFirstWrite} bytes`);
    assert.ok(convertedAtPause > 0);
  });
}

test('overlap: a kill -9 while a raw.xz streams resumes and publishes the right digest', async () => {
  const name = 'disk.raw.xz';
  const size = statSync(join(dir, name)).size;
  const cacheDir = freshCache();
  const release = pauseDownloadsAt(Math.floor(size / 2));
  const start = server.log.length;
  const tmpDir = join(cacheDir, 'tmp');
  const converting = () => {
    try {
      return readdirSync(tmpDir).some((f) => f.startsWith('.convert.raw'));
    } catch {
      return false;
    }
  };
  const run = diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url(name)]);
  try {
    while (!converting() && run.child.exitCode === null) await sleep(10);
    assert.ok(converting(), 'the converter never started');
    assert.ok(sentOf(start, name) < size, 'the download ended before the kill point');
    run.child.kill('SIGKILL');
    assert.equal((await run.done).signal, 'SIGKILL');
  } finally {
    release();
  }

  const index = new CacheIndex(new CacheLayout(cacheDir));
  assert.equal((await index.sources()).length, 0, 'a record was published before the end');
  const resumeAt = server.log.length;
  const r = await pull(server.url(name), { cacheDir });
  assert.equal(r.record.contentDigest, expected);
  assert.equal(r.record.compression, 'xz');
  assert.match(server.log[resumeAt]!.range ?? '', /^bytes=\d+-$/);
  assert.ok(r.downloaded < size, `fetched ${r.downloaded} of ${size} again`);
  assert.equal(diskpipe(['checksum', r.path]).stdout.split(' ')[0], expected);
  const verify = diskpipe(['cache', 'verify', '--cache-dir', cacheDir]);
  assert.equal(verify.status, 0, verify.stdout + verify.stderr);
});
