import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CacheLayout, urlKey } from '../../src/cache/layout.js';
import { pull } from '../../src/cache/pull.js';
import { CacheIndex } from '../../src/cache/records.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, diskpipeAsync, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-pull-');
const server = await startServer();
after(() => server.close());

// A 64 MiB disk with 8 MiB of incompressible data, as raw, qcow2 and raw.gz.
const raw = sparseFile(join(dir, 'disk.raw'), 64 * MiB);
writeFileSync(join(dir, 'data.bin'), randomBytes(8 * MiB));
execFileSync('dd', [
  `if=${join(dir, 'data.bin')}`,
  `of=${raw}`,
  'bs=1M',
  'seek=20',
  'conv=notrunc,sparse',
  'status=none',
]);
const qcow2 = join(dir, 'disk.qcow2');
await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
execFileSync('sh', ['-c', `gzip -c ${raw} > ${join(dir, 'disk.raw.gz')}`]);
for (const name of ['disk.raw', 'disk.qcow2', 'disk.raw.gz'])
  server.files.set(name, { path: join(dir, name) });
const expected = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;

let n = 0;
const freshCache = () => join(dir, `cache-${n++}`);

async function consistent(cacheDir: string): Promise<void> {
  // No record may point at missing or partial data, and every blob must match its digest.
  const index = new CacheIndex(new CacheLayout(cacheDir));
  for (const s of await index.sources())
    assert.ok(await index.blob(s.contentDigest), `record ${s.url} points at missing data`);
  const verify = diskpipe(['cache', 'verify', '--cache-dir', cacheDir]);
  assert.equal(verify.status, 0, verify.stdout + verify.stderr);
}

test('pull: raw, qcow2 and raw.gz of one disk are stored once, with both digests and all sizes', async () => {
  const cacheDir = freshCache();
  const results = [];
  for (const name of ['disk.raw', 'disk.qcow2', 'disk.raw.gz'])
    results.push(await pull(server.url(name), { cacheDir }));
  for (const r of results) {
    assert.equal(r.record.contentDigest, expected);
    assert.equal(r.record.virtualSize, 64 * MiB);
    assert.ok(
      r.record.allocatedSize >= 8 * MiB && r.record.allocatedSize < 10 * MiB,
      `allocated ${r.record.allocatedSize}`,
    );
  }
  assert.equal(results[1]!.record.sourceFormat, 'qcow2');
  assert.equal(results[2]!.record.compression, 'gzip');
  assert.equal(results[0]!.record.download.size, 64 * MiB);
  assert.ok(results[0]!.record.etag);
  assert.equal(readdirSync(join(cacheDir, 'blobs')).filter((f) => f.endsWith('.raw')).length, 1);
  const blob = results[0]!.path;
  assert.ok(readFileSync(blob).equals(readFileSync(raw)));
  assert.equal(statSync(blob).mode & 0o222, 0, 'cached data is read-only');
  await consistent(cacheDir);
});

test('pull: a second pull revalidates (304) and downloads nothing; --offline uses the cache only', async () => {
  const cacheDir = freshCache();
  await pull(server.url('disk.qcow2'), { cacheDir });
  const before = server.bytesSent();
  const again = await pull(server.url('disk.qcow2'), { cacheDir });
  assert.equal(again.hit, true);
  assert.equal(server.bytesSent(), before);
  assert.equal(server.log.at(-1)!.status, 304);
  const logged = server.log.length;
  assert.equal((await pull(server.url('disk.qcow2'), { cacheDir, offline: true })).hit, true);
  assert.equal(server.log.length, logged);
  await assert.rejects(pull(server.url('disk.raw'), { cacheDir, offline: true }), {
    code: 'CACHE',
  });
});

test('pull: 4 parallel pulls of one URL download once and all succeed', async () => {
  const cacheDir = freshCache();
  const before = server.log.filter((e) => e.path === '/disk.raw.gz' && e.status === 200).length;
  const runs = Array.from(
    { length: 4 },
    () => diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url('disk.raw.gz')]).done,
  );
  for (const r of await Promise.all(runs)) {
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${expected}  `));
  }
  assert.equal(
    server.log.filter((e) => e.path === '/disk.raw.gz' && e.status === 200).length - before,
    1,
  );
  await consistent(cacheDir);
});

async function killAt(
  cacheDir: string,
  url: string,
  env: NodeJS.ProcessEnv,
  ready: (stderr: string) => boolean,
) {
  const run = diskpipeAsync(['pull', '--cache-dir', cacheDir, url], { env });
  // No deadline: the kill point is an event (bytes on disk, a message), not a moment.
  while (!ready(run.stderr()) && run.child.exitCode === null) await sleep(25);
  assert.ok(ready(run.stderr()), `never reached the kill point: ${run.stderr()}`);
  run.child.kill('SIGKILL');
  const r = await run.done;
  assert.equal(r.signal, 'SIGKILL');
}

test('pull: kill -9 mid-download, then the next pull resumes with a Range request and fetches < 60%', async () => {
  const cacheDir = freshCache();
  server.behaviour.stallAfter = 30 * MiB;
  // The kill lands once the client has 29 MiB of the part on disk (the server stalls at 30):
  // what the resume can skip is decided by bytes, not by how fast this machine is.
  const part = join(new CacheLayout(cacheDir).tmpDir, `${urlKey(server.url('disk.raw'))}.part`);
  const onDisk = () => (existsSync(part) ? statSync(part).size : 0);
  await killAt(cacheDir, server.url('disk.raw'), {}, () => onDisk() >= 29 * MiB);
  server.behaviour.stallAfter = undefined;
  await consistent(cacheDir);
  assert.equal((await new CacheIndex(new CacheLayout(cacheDir)).sources()).length, 0);
  const resumeAt = server.log.length;
  const r = await pull(server.url('disk.raw'), { cacheDir });
  assert.equal(r.record.contentDigest, expected);
  const resumed = server.log.slice(resumeAt);
  assert.match(resumed[0]!.range ?? '', /^bytes=\d+-$/);
  const fetched = resumed.reduce((s, e) => s + e.sent, 0);
  assert.ok(fetched < 0.6 * 64 * MiB, `fetched ${fetched}`);
  await consistent(cacheDir);
});

for (const point of ['convert', 'publish']) {
  test(`pull: kill -9 at ${point} leaves no record pointing at partial data`, async () => {
    const cacheDir = freshCache();
    await killAt(cacheDir, server.url('disk.qcow2'), { DISKPIPE_TEST_PAUSE_AT: point }, (s) =>
      s.includes(`test pause at ${point}`),
    );
    await consistent(cacheDir);
    assert.equal((await new CacheIndex(new CacheLayout(cacheDir)).sources()).length, 0);
    const r = await pull(server.url('disk.qcow2'), { cacheDir });
    assert.equal(r.record.contentDigest, expected);
    await consistent(cacheDir);
  });
}

test('pull: a server without Range support, and one that changes the file between attempts', async () => {
  const cacheDir = freshCache();
  const changing = join(dir, 'changing.raw');
  writeFileSync(changing, randomBytes(4 * MiB));
  server.files.set('changing.raw', { path: changing });
  server.behaviour.dropAfter = 2 * MiB;
  await assert.rejects(pull(server.url('changing.raw'), { cacheDir, retries: 0 }), {
    code: 'HTTP',
  });
  server.behaviour.dropAfter = undefined;
  const fresh = randomBytes(4 * MiB);
  writeFileSync(changing, fresh);
  const r = await pull(server.url('changing.raw'), { cacheDir });
  assert.ok(readFileSync(r.path).equals(fresh), 'a changed file is downloaded again, not spliced');
  server.behaviour.ranges = false;
  try {
    const other = await pull(server.url('disk.qcow2'), { cacheDir: freshCache() });
    assert.equal(other.record.contentDigest, expected);
  } finally {
    server.behaviour.ranges = true;
  }
});

test('pull: bad input gives clear errors and keeps the cache consistent', async () => {
  const cacheDir = freshCache();
  const good = await pull(server.url('disk.raw.gz'), { cacheDir });
  await assert.rejects(
    pull(server.url('disk.raw'), { cacheDir, digest: `sha256:${'0'.repeat(64)}` }),
    { code: 'CHECKSUM_MISMATCH' },
  );
  assert.equal(
    readdirSync(join(cacheDir, 'tmp')).length,
    0,
    'partial data of a wrong download is deleted',
  );
  // A corrupt qcow2 (L1 table offset far past the end) and an unsupported format.
  const corrupt = join(dir, 'corrupt.qcow2');
  await qemuImg('create', '-f', 'qcow2', corrupt, '1G');
  const bytes = readFileSync(corrupt);
  bytes.writeBigUInt64BE(1n << 40n, 40);
  writeFileSync(corrupt, bytes);
  server.files.set('corrupt.qcow2', { path: corrupt });
  await assert.rejects(pull(server.url('corrupt.qcow2'), { cacheDir }), { code: 'CORRUPT' });
  const v1 = join(dir, 'old.qcow');
  await qemuImg('create', '-f', 'qcow', v1, '1M');
  server.files.set('old.qcow', { path: v1 });
  await assert.rejects(pull(server.url('old.qcow'), { cacheDir }), {
    code: 'UNSUPPORTED',
    message: /qcow version 1/,
  });
  // A pulled image may not reference host files.
  const overlay = join(dir, 'overlay.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', qcow2, '-F', 'qcow2', overlay);
  server.files.set('overlay.qcow2', { path: overlay });
  await assert.rejects(pull(server.url('overlay.qcow2'), { cacheDir }), {
    code: 'UNTRUSTED_REFERENCE',
  });
  await assert.rejects(pull(server.url('missing'), { cacheDir }), { message: /HTTP 404/ });
  server.behaviour.stallAfter = 0;
  await assert.rejects(pull(server.url('disk.raw'), { cacheDir, idleTimeoutMs: 300, retries: 0 }), {
    message: /timeout/,
  });
  server.behaviour.stallAfter = undefined;
  assert.equal(diskpipe(['pull', '--cache-dir', cacheDir, 'http://']).status, 2);
  const notADir = join(dir, 'plain-file');
  writeFileSync(notADir, '');
  const unwritable = diskpipe(['pull', '--cache-dir', join(notADir, 'cache'), raw]);
  assert.equal(unwritable.status, 2);
  assert.match(unwritable.stderr, /^diskpipe: cache directory .* is not writable/);
  // The good entry survived all of that.
  assert.equal(
    (await new CacheIndex(new CacheLayout(cacheDir)).resolve(good.record.contentDigest.slice(0, 8)))
      .blob.contentDigest,
    expected,
  );
  await consistent(cacheDir);
});

test('disk create: reflink clones on XFS cost < 1 MiB; qcow2 overlays pin their entry', async (t) => {
  const { mountXfs } = await import('../helpers/xfs.js');
  const mnt = mountXfs(t, join(dir, 'xfs-disks'));
  const cacheDir = join(mnt, 'cache');
  const first = diskpipe([
    'disk',
    'create',
    '--cache-dir',
    cacheDir,
    '--from',
    raw,
    '--json',
    join(mnt, 'vm1.raw'),
  ]);
  assert.equal(first.status, 0, first.stderr);
  const disks = [];
  for (let i = 2; i <= 4; i++) {
    const r = diskpipe([
      'disk',
      'create',
      '--cache-dir',
      cacheDir,
      '--from',
      expected.slice(0, 12),
      '--size',
      '128M',
      '--json',
      join(mnt, `vm${i}.raw`),
    ]);
    assert.equal(r.status, 0, r.stderr);
    disks.push(JSON.parse(r.stdout));
  }
  for (const d of disks) {
    assert.equal(d.strategy, 'reflink');
    assert.equal(d.bytesWritten, 0);
    assert.equal(d.virtualSize, 128 * MiB);
    assert.equal(statSync(d.path).size, 128 * MiB);
  }
  const free = (p: string) =>
    Number(execFileSync('df', ['--output=used', '-B1', p]).toString().split('\n')[1]);
  const used = free(mnt);
  diskpipe([
    'disk',
    'create',
    '--cache-dir',
    cacheDir,
    '--from',
    expected.slice(0, 12),
    join(mnt, 'vm5.raw'),
  ]);
  assert.ok(free(mnt) - used < MiB, `a disk cost ${free(mnt) - used} bytes`);
  assert.equal(diskpipe(['compare', join(mnt, 'vm5.raw'), raw]).status, 0);

  const overlay = join(dir, 'vm-overlay.qcow2');
  const made = diskpipe([
    'disk',
    'create',
    '--cache-dir',
    cacheDir,
    '--from',
    raw,
    '--format',
    'qcow2',
    overlay,
  ]);
  assert.equal(made.status, 0, made.stderr);
  await qemuImg('check', overlay);
  await qemuIo(overlay, ['write -P 0x77 0 64k']);
  assert.equal(diskpipe(['compare', overlay, raw]).status, 1);
  const rm = diskpipe(['cache', 'rm', '--cache-dir', cacheDir, expected.slice(0, 8)]);
  assert.equal(rm.status, 2);
  assert.match(rm.stderr, /backs 1 disk/);
  const prune = diskpipe(['cache', 'prune', '--cache-dir', cacheDir, '--max-size', '0']);
  assert.equal(prune.status, 0);
  assert.match(prune.stdout, /kept .*used by 1 disk/);
  assert.ok(existsSync(join(cacheDir, 'blobs', `${expected}.raw`)));
  const ls = JSON.parse(diskpipe(['cache', 'ls', '--json', '--cache-dir', cacheDir]).stdout);
  assert.deepEqual(ls[0].pins, [overlay]);
  const forced = diskpipe([
    'cache',
    'rm',
    '--force',
    '--cache-dir',
    cacheDir,
    expected.slice(0, 8),
  ]);
  assert.equal(forced.status, 0);
  assert.match(forced.stderr, /warning/);
  assert.equal(diskpipe(['cache', 'ls', '--json', '--cache-dir', cacheDir]).stdout.trim(), '[]');
});
