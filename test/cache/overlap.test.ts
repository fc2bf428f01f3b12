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
import { diskpipe, diskpipeAsync, diskWithRandomRuns, qemuImg, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-overlap-');
const server = await startServer();
after(() => server.close());

// 64 MiB disk, 8 MiB of incompressible data in two places, as qcow2 (≈ 8 MiB download).
const raw = diskWithRandomRuns(join(dir, 'disk.raw'), 64 * MiB, [3 * MiB, 40 * MiB], 4 * MiB);
const qcow2 = join(dir, 'disk.qcow2');
await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
const qcow2Size = statSync(qcow2).size;
server.files.set('disk.qcow2', { path: qcow2 });
const expected = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;
let n = 0;
const freshCache = () => join(dir, `cache-${n++}`);
const sentOf = (start: number) =>
  server.log.slice(start).reduce((s, e) => (e.path === '/disk.qcow2' ? s + e.sent : s), 0);

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

test('overlap: the qcow2 converter starts long before the download ends', async () => {
  const cacheDir = freshCache();
  // The download pauses at 3/4 of the file and goes on only once the converter has copied
  // something: decided by events, so a busy machine cannot change the outcome.
  const pausedAt = Math.floor(0.75 * qcow2Size);
  const release = pauseDownloadsAt(pausedAt);
  const start = server.log.length;
  let sentAtFirstCopy: number | undefined;
  try {
    const r = await pull(server.url('disk.qcow2'), {
      cacheDir,
      onProgress: ({ phase, done }) => {
        if (phase === 'convert' && done > 0 && sentAtFirstCopy === undefined) {
          sentAtFirstCopy = sentOf(start);
          release();
        }
      },
    });
    assert.equal(r.record.contentDigest, expected);
    assert.equal(r.record.sourceFormat, 'qcow2');
  } finally {
    release();
  }
  assert.ok(sentAtFirstCopy !== undefined);
  assert.ok(sentAtFirstCopy <= pausedAt, `first copy after ${sentAtFirstCopy} bytes`);
});

test('overlap: a kill -9 while converting and downloading resumes and publishes the right digest', async () => {
  const cacheDir = freshCache();
  const release = pauseDownloadsAt(Math.floor(qcow2Size / 2));
  const start = server.log.length;
  const tmpDir = join(cacheDir, 'tmp');
  const converting = () => {
    try {
      return readdirSync(tmpDir).some((f) => f.startsWith('.convert.raw'));
    } catch {
      return false;
    }
  };
  const run = diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url('disk.qcow2')]);
  try {
    // The download waits at half its bytes; the kill lands once the converter is running.
    while (!converting() && run.child.exitCode === null) await sleep(10);
    assert.ok(converting(), 'the converter never started');
    assert.ok(sentOf(start) < qcow2Size, 'the download ended before the kill point');
    run.child.kill('SIGKILL');
    assert.equal((await run.done).signal, 'SIGKILL');
  } finally {
    release();
  }

  const index = new CacheIndex(new CacheLayout(cacheDir));
  assert.equal((await index.sources()).length, 0, 'a record was published before the end');
  const resumeAt = server.log.length;
  const r = await pull(server.url('disk.qcow2'), { cacheDir });
  assert.equal(r.record.contentDigest, expected);
  assert.match(server.log[resumeAt]!.range ?? '', /^bytes=\d+-$/);
  assert.ok(r.downloaded < qcow2Size, `fetched ${r.downloaded} of ${qcow2Size} again`);
  assert.equal(diskpipe(['checksum', r.path]).stdout.split(' ')[0], expected);
  const verify = diskpipe(['cache', 'verify', '--cache-dir', cacheDir]);
  assert.equal(verify.status, 0, verify.stdout + verify.stderr);
});

test('overlap: a download that fails mid-way stops the converter cleanly and keeps the part', async () => {
  const cacheDir = freshCache();
  server.behaviour.dropAfter = Math.floor(qcow2Size / 2);
  try {
    await assert.rejects(pull(server.url('disk.qcow2'), { cacheDir, retries: 0 }), {
      code: 'HTTP',
    });
  } finally {
    server.behaviour.dropAfter = undefined;
  }
  const left = readdirSync(join(cacheDir, 'tmp'));
  assert.ok(!left.some((f) => f.startsWith('.convert.raw')), `left ${left.join(' ')}`);
  assert.ok(left.some((f) => f.endsWith('.part')));
  const r = await pull(server.url('disk.qcow2'), { cacheDir });
  assert.equal(r.record.contentDigest, expected);
});

test('overlap: a qcow2 stored out of guest order is converted in the order it arrives', async () => {
  // Written from the last 8 MiB down to the first: the host file holds guest 56–64 MiB
  // first and guest 0–8 MiB last, so a guest-order copy would wait for the end.
  const reversed = join(dir, 'reversed.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', reversed, '64M');
  const writes = [7, 6, 5, 4, 3, 2, 1, 0].flatMap((i) => [
    '-c',
    `write -P 0x${(i + 0x11).toString(16)} ${i * 8}M 8M`,
  ]);
  execFileSync('qemu-io', ['-f', 'qcow2', ...writes, reversed], { stdio: 'ignore' });
  const size = statSync(reversed).size;
  server.files.set('reversed.qcow2', { path: reversed });
  const want = diskpipe(['checksum', reversed]).stdout.split(' ')[0]!;
  const sent = (start: number) =>
    server.log.slice(start).reduce((s, e) => (e.path === '/reversed.qcow2' ? s + e.sent : s), 0);

  const cacheDir = freshCache();
  // Paused at half the file: the first 32 MiB of guest data it holds (guest 32–64 MiB) can
  // be converted; the pause ends once 16 MiB are, by events.
  const pausedAt = Math.floor(size / 2);
  const release = pauseDownloadsAt(pausedAt);
  const start = server.log.length;
  let sentAtRelease: number | undefined;
  try {
    const r = await pull(server.url('reversed.qcow2'), {
      cacheDir,
      onProgress: ({ phase, done }) => {
        if (phase === 'convert' && done >= 16 * MiB && sentAtRelease === undefined) {
          sentAtRelease = sent(start);
          release();
        }
      },
    });
    assert.equal(r.record.contentDigest, want);
    assert.equal(r.record.sourceFormat, 'qcow2');
    // The download (64 MiB of patterns) and the converted 64 MiB, every byte counted once.
    assert.ok(r.written >= 128 * MiB, `written ${r.written}`);
    assert.ok(r.written <= 130 * MiB, `written ${r.written}`);
  } finally {
    release();
  }
  assert.ok(sentAtRelease !== undefined);
  assert.ok(sentAtRelease <= pausedAt, `16 MiB converted only after ${sentAtRelease} bytes`);
});
