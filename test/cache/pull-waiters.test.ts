import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, diskpipeAsync, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-pull-waiters-');
const server = await startServer();
after(() => server.close());

// A server that sends neither ETag nor Last-Modified (as bench/http-serve.ts): a pull cannot
// revalidate a cached copy with it, only download it again.
const file = join(dir, 'disk.raw');
writeFileSync(file, randomBytes(4 * MiB));
server.files.set('disk.raw', { path: file, etag: false });
const expected = diskpipe(['checksum', file]).stdout.split(' ')[0]!;
const downloads = () =>
  server.log.filter((e) => e.path === '/disk.raw' && e.method === 'GET' && e.status === 200).length;

/** Polls (no deadline: the test runner's own limit applies) until `done()` holds. */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await sleep(20);
}

test('pull: pulls that waited for another pull of the same URL use its result, even without validators', async () => {
  const cacheDir = join(dir, 'cache');
  const args = ['pull', '--cache-dir', cacheDir, server.url('disk.raw')];
  // The first download pauses half-way; the others start and wait for its lock meanwhile.
  let release!: () => void;
  server.behaviour.pauseAt = 2 * MiB;
  server.behaviour.resume = new Promise<void>((r) => {
    release = r;
  });
  const first = diskpipeAsync(args);
  await until(() => downloads() === 1);
  const waiters = Array.from({ length: 3 }, () => diskpipeAsync(args));
  await until(() => waiters.every((w) => /waiting for another diskpipe/.test(w.stderr())));
  server.behaviour.pauseAt = undefined;
  server.behaviour.resume = undefined;
  release();
  for (const r of await Promise.all([first.done, ...waiters.map((w) => w.done)])) {
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${expected}  `));
  }
  // Before: every waiter downloaded the file again (4 downloads).
  assert.equal(downloads(), 1);

  // A later pull did not wait: with no validator to ask about, it downloads again (by design).
  const again = await diskpipeAsync(args).done; // the server runs in this process
  assert.equal(again.status, 0, again.stderr);
  assert.equal(downloads(), 2);
  assert.match(again.stderr, /is cached, but its server sends no ETag or Last-Modified/);
});
