/**
 * The cache object: one DiskCache does what the CLI's cache commands do, and an abort of a
 * pull or a createDisk — fired by a progress event, never by a timer — rejects with an
 * AbortError and leaves no record, no converted temporary file and no disk behind.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DiskCache } from '../../src/index.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, qemuImg, sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-diskcache-');
const server = await startServer();
after(() => server.close());

// A 64 MiB disk with 16 MiB of incompressible data, as qcow2 and raw.gz.
const raw = sparseFile(join(dir, 'disk.raw'), 64 * MiB);
writeFileSync(join(dir, 'data.bin'), randomBytes(16 * MiB));
execFileSync('dd', [
  `if=${join(dir, 'data.bin')}`,
  `of=${raw}`,
  'bs=1M',
  'seek=8',
  'conv=notrunc,sparse',
  'status=none',
]);
await qemuImg('convert', '-O', 'qcow2', raw, join(dir, 'disk.qcow2'));
execFileSync('sh', ['-c', `gzip -1 -c ${raw} > ${join(dir, 'disk.raw.gz')}`]);
for (const name of ['disk.qcow2', 'disk.raw.gz']) server.files.set(name, { path: join(dir, name) });
const expected = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;

let n = 0;
const freshCache = () => new DiskCache({ dir: join(dir, `cache-${n++}`) });

/** Files in the cache's temporary area other than a resumable partial download. */
function leftovers(cache: DiskCache): string[] {
  const tmp = join(cache.dir, 'tmp');
  if (!existsSync(tmp)) return [];
  return readdirSync(tmp).filter((f) => !/\.part(\.json)?$/.test(f));
}

test('DiskCache: pull, list, entry, createDisk, remove (pinned: only with force), prune, verify', async () => {
  const cache = freshCache();
  const phases = new Set<string>();
  const pulled = await cache.pull(server.url('disk.qcow2'), {
    onProgress: (p) => {
      phases.add(p.phase);
      assert.ok(p.total === undefined || p.done <= p.total, `${p.done} of ${p.total}`);
    },
  });
  assert.equal(pulled.record.contentDigest, expected);
  assert.ok(phases.has('download') && phases.has('convert'), [...phases].join(','));
  assert.equal((await cache.pull(server.url('disk.qcow2'), { offline: true })).hit, true);

  const [entry, ...rest] = await cache.list();
  assert.equal(rest.length, 0);
  assert.equal(entry!.blob.contentDigest, expected);
  assert.equal((await cache.entry(expected.slice(0, 10))).blob.contentDigest, expected);
  assert.equal(cache.path(entry!), pulled.path);

  const disk = join(dir, 'vm.qcow2');
  const made = await cache.createDisk(expected.slice(0, 12), disk, { format: 'qcow2' });
  assert.equal(made.strategy, 'overlay');
  assert.deepEqual(
    (await cache.entry(expected)).pins.map((p) => p.path),
    [disk],
  );
  await assert.rejects(cache.remove(expected), { code: 'CACHE', message: /backs 1 disk/ });
  assert.equal((await cache.prune({ maxSize: 0 })).removed.length, 0, 'a pinned entry stays');

  const verified = await cache.verify(expected);
  assert.equal(verified.ok, true);
  assert.deepEqual(await cache.unpin(disk), [expected]);
  const pruned = await cache.prune({ maxSize: 0, dryRun: true });
  assert.deepEqual(
    pruned.removed.map((e) => e.blob.contentDigest),
    [expected],
  );
  const removed = await cache.remove(server.url('disk.qcow2'));
  assert.equal(removed.blob.contentDigest, expected);
  assert.deepEqual(await cache.list(), []);
});

test('DiskCache: a pull aborted mid-download rejects with AbortError and records nothing', async () => {
  const cache = freshCache();
  const ac = new AbortController();
  let abortedAt: number | undefined;
  await assert.rejects(
    cache.pull(server.url('disk.qcow2'), {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'download' && p.done > 0 && abortedAt === undefined) {
          abortedAt = p.done;
          ac.abort();
        }
      },
    }),
    { name: 'AbortError', code: 'ABORTED' },
  );
  assert.ok(abortedAt !== undefined);
  assert.deepEqual(await cache.list(), []);
  assert.deepEqual(leftovers(cache), []);
  assert.deepEqual(readdirSync(join(cache.dir, 'blobs')), []);
  // The partial download is kept for resuming (DESIGN: the cache's temporary area).
  const again = await cache.pull(server.url('disk.qcow2'));
  assert.equal(again.record.contentDigest, expected);
});

test('DiskCache: a pull aborted while converting leaves only its resumable part behind', async () => {
  const cache = freshCache();
  const ac = new AbortController();
  await assert.rejects(
    cache.pull(server.url('disk.raw.gz'), {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'convert' && p.done > 0) ac.abort();
      },
    }),
    { code: 'ABORTED' },
  );
  assert.deepEqual(await cache.list(), []);
  assert.deepEqual(readdirSync(join(cache.dir, 'blobs')), []);
  // The stream converts while it downloads: an abort may come before the download ends, and
  // then the part (and its validators) stays for the next pull to resume; nothing else does.
  const left = readdirSync(join(cache.dir, 'tmp'));
  assert.ok(
    left.every((f) => /^[0-9a-f]{64}\.part(\.json)?$/.test(f)),
    `left in tmp: ${left.join(', ')}`,
  );
  const again = await cache.pull(server.url('disk.raw.gz'));
  assert.equal(again.hit, false);
  assert.deepEqual(readdirSync(join(cache.dir, 'tmp')), []);
});

test('DiskCache: createDisk aborted during its pull makes no disk; an aborted signal does nothing', async () => {
  const cache = freshCache();
  const dest = join(dir, 'aborted.raw');
  const ac = new AbortController();
  await assert.rejects(
    cache.createDisk(server.url('disk.raw.gz'), dest, {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'convert' && p.done > 0) ac.abort();
      },
    }),
    { code: 'ABORTED' },
  );
  assert.equal(existsSync(dest), false);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('aborted')),
    [],
  );
  assert.deepEqual(await cache.list(), []);
  const requests = server.log.length;
  await assert.rejects(
    cache.createDisk(server.url('disk.qcow2'), dest, { signal: AbortSignal.abort() }),
    { code: 'ABORTED' },
  );
  assert.equal(server.log.length, requests, 'nothing was fetched');
});
