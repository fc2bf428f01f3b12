/**
 * Issue 10, items 4–8: pins survive a moved disk, disk create never replaces what it should
 * not, corrupt or tampered blobs are not handed out, and temporary files do not pile up.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CacheLayout, urlKey } from '../../src/cache/layout.js';
import { removeEntry } from '../../src/cache/maintenance.js';
import { CacheIndex } from '../../src/cache/records.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, diskpipeAsync, qemuImg, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-cachesafe-');
const server = await startServer();
after(() => server.close());

const raw = join(dir, 'disk.raw');
await qemuImg('create', '-f', 'raw', raw, '8M');
const data = join(dir, 'data.bin');
writeFileSync(data, randomBytes(2 * MiB));
execFileSync('dd', [`if=${data}`, `of=${raw}`, 'bs=1M', 'seek=3', 'conv=notrunc', 'status=none']);
const qcow2 = join(dir, 'disk.qcow2');
await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
server.files.set('disk.qcow2', { path: qcow2 });
const url = server.url('disk.qcow2');
const digest = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;

let n = 0;
const freshCache = () => join(dir, `cache-${n++}`);
type Result = { status: number | null; stdout: string; stderr: string };
// Async: the HTTP server runs in this process and must keep answering.
const cli = (cacheDir: string, ...args: string[]): Promise<Result> =>
  diskpipeAsync([...args.slice(0, 2), '--cache-dir', cacheDir, ...args.slice(2)]).done;
const ok = async (p: Promise<Result>) => {
  const r = await p;
  assert.equal(r.status, 0, r.stderr);
  return r;
};
const ls = async (cacheDir: string) =>
  JSON.parse((await ok(cli(cacheDir, 'cache', 'ls', '--json'))).stdout);
const same = (a: string, b: string) =>
  spawnSync('qemu-img', ['compare', '-U', a, b], { stdio: 'ignore' }).status === 0;

test('pins: a moved overlay keeps its pin (unverified) and rm still refuses; unpin and --drop-missing-pins remove pins', async () => {
  const cacheDir = freshCache();
  const disk = join(dir, 'p.qcow2');
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, '--format', 'qcow2', disk));
  renameSync(disk, join(dir, 'p2.qcow2'));
  const listed = await ls(cacheDir);
  assert.deepEqual(listed[0].pins, [disk]);
  assert.deepEqual(listed[0].unverifiedPins, [disk]);
  assert.match((await ok(cli(cacheDir, 'cache', 'ls'))).stdout, /unverified pin: .*p\.qcow2/);
  const shown = JSON.parse(
    (await ok(cli(cacheDir, 'cache', 'show', '--json', digest.slice(0, 8)))).stdout,
  );
  assert.deepEqual(shown.unverifiedPins, [disk]);
  renameSync(join(dir, 'p2.qcow2'), disk);
  const rm = await cli(cacheDir, 'cache', 'rm', url);
  assert.equal(rm.status, 2);
  assert.match(rm.stderr, /backs 1 disk/);
  assert.ok(same(disk, raw), 'the overlay still reads its backing file');
  // prune keeps the pinned entry even with the disk missing, unless asked to drop such pins.
  renameSync(disk, join(dir, 'p2.qcow2'));
  assert.match(
    (await ok(cli(cacheDir, 'cache', 'prune', '--max-size', '0'))).stdout,
    /kept .*used by 1/,
  );
  const dropped = (
    await ok(cli(cacheDir, 'cache', 'prune', '--max-size', '0', '--drop-missing-pins'))
  ).stdout;
  assert.match(dropped, /removed pin of missing disk .*p\.qcow2/);
  assert.match(dropped, /removed 1 entry/);
  // cache unpin PATH.
  const other = join(dir, 'q.qcow2');
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, '--format', 'qcow2', other));
  assert.equal((await cli(cacheDir, 'cache', 'unpin', join(dir, 'nothing.qcow2'))).status, 2);
  assert.match((await ok(cli(cacheDir, 'cache', 'unpin', other))).stdout, /unpinned/);
  assert.deepEqual((await ls(cacheDir))[0].pins, []);
  await ok(cli(cacheDir, 'cache', 'rm', url));
});

test('rm decides on pins under the entry lock: an entry read before a disk pinned it is not removed', async () => {
  const cacheDir = freshCache();
  await ok(cli(cacheDir, 'pull', url));
  const index = new CacheIndex(new CacheLayout(cacheDir));
  const seen = await index.resolve(url); // what rm/prune saw: no pins yet
  assert.deepEqual(seen.pins, []);
  const disk = join(dir, 'raced.qcow2');
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, '--format', 'qcow2', disk));
  await assert.rejects(removeEntry(index, seen), { code: 'CACHE', message: /backs 1 disk/ });
  assert.ok(existsSync(join(cacheDir, 'blobs', `${digest}.raw`)));
  assert.ok(same(disk, raw));
});

test('disk create: refuses an existing DEST unless --force, and a non-regular DEST always', async () => {
  const cacheDir = freshCache();
  const disk = join(dir, 'vm.raw');
  writeFileSync(disk, 'precious');
  const refused = await cli(cacheDir, 'disk', 'create', '--from', url, disk);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /^diskpipe: .*vm\.raw already exists; use --force/);
  assert.equal(readFileSync(disk, 'utf8'), 'precious');
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, '--force', disk));
  assert.ok(same(disk, raw));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const chr = join(dir, 'chr');
  execFileSync('mknod', [chr, 'c', '1', '3']);
  const sub = join(dir, 'subdir');
  mkdirSync(sub);
  for (const dest of [fifo, chr, sub]) {
    for (const format of ['raw', 'qcow2']) {
      const r = await cli(
        cacheDir,
        'disk',
        'create',
        '--from',
        url,
        '--format',
        format,
        '--force',
        dest,
      );
      assert.equal(r.status, 2, `${dest} ${format}`);
      assert.match(r.stderr, /not a regular file/);
    }
  }
  assert.ok(statSync(fifo).isFIFO() && statSync(chr).isCharacterDevice());
  assert.ok(statSync(sub).isDirectory());
  assert.deepEqual((await ls(cacheDir))[0].pins, []);
});

test('disk create --force refuses a DEST inside the cache (the cached blob itself included)', async () => {
  const cacheDir = freshCache();
  await ok(cli(cacheDir, 'pull', url));
  const blob = join(cacheDir, 'blobs', `${digest}.raw`);
  const before = readFileSync(blob);
  const dests = [blob, join(cacheDir, 'blobs', '..', 'blobs', `${digest}.raw`)];
  dests.push(join(cacheDir, 'tmp', 'vm.raw'));
  for (const dest of dests) {
    for (const format of ['raw', 'qcow2']) {
      const r = await cli(
        cacheDir,
        'disk',
        'create',
        '--from',
        url,
        '--format',
        format,
        '--force',
        dest,
      );
      assert.equal(r.status, 2, `${dest} ${format}: ${r.stderr}`);
      assert.match(r.stderr, /^diskpipe: .*inside the diskpipe cache/);
    }
  }
  assert.deepEqual(readFileSync(blob), before);
  assert.equal(statSync(blob).mode & 0o777, 0o444);
  assert.equal(existsSync(join(cacheDir, 'tmp', 'vm.raw')), false);
  const [entry] = await ls(cacheDir);
  assert.deepEqual(entry.pins, []);
  assert.equal(entry.bad, null);
});

test('disk create: a failed create leaves no DEST and no pin; a raw disk replacing an overlay drops its pin', async () => {
  const cacheDir = freshCache();
  const missingDir = join(dir, 'no-such-dir', 'vm.qcow2');
  const failed = await cli(
    cacheDir,
    'disk',
    'create',
    '--from',
    url,
    '--format',
    'qcow2',
    missingDir,
  );
  assert.equal(failed.status, 2);
  assert.doesNotMatch(failed.stderr, /internal error/);
  assert.equal(existsSync(missingDir), false);
  assert.deepEqual((await ls(cacheDir))[0].pins, []);
  const small = join(dir, 'small.qcow2');
  const tooSmall = await cli(
    cacheDir,
    'disk',
    'create',
    '--from',
    url,
    '--format',
    'qcow2',
    '--size',
    '1M',
    small,
  );
  assert.equal(tooSmall.status, 2);
  assert.equal(existsSync(small), false);
  assert.deepEqual((await ls(cacheDir))[0].pins, []);
  const shared = join(dir, 'shared.img');
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, '--format', 'qcow2', shared));
  assert.deepEqual((await ls(cacheDir))[0].pins, [shared]);
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, '--force', shared));
  assert.deepEqual((await ls(cacheDir))[0].pins, [], 'a raw clone is not an overlay: no stale pin');
  assert.ok(same(shared, raw));
});

test('blobs: verify quarantines a corrupt blob; disk create and pull --offline refuse it; a pull repairs it', async () => {
  const cacheDir = freshCache();
  await ok(cli(cacheDir, 'pull', url));
  const blob = join(cacheDir, 'blobs', `${digest}.raw`);
  chmodSync(blob, 0o644);
  const bytes = readFileSync(blob);
  bytes[3 * MiB + 100] = (bytes[3 * MiB + 100] ?? 0) ^ 0xff;
  writeFileSync(blob, bytes);
  const verify = await cli(cacheDir, 'cache', 'verify');
  assert.equal(verify.status, 1);
  assert.match(verify.stdout, /quarantined/);
  assert.ok((await ls(cacheDir))[0].bad);
  const disk = join(dir, 'bad.raw');
  const refused = await cli(cacheDir, 'disk', 'create', '--from', url, disk);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /cache verify found it corrupt.*pull it again/);
  assert.equal(existsSync(disk), false);
  assert.equal((await cli(cacheDir, 'pull', '--offline', url)).status, 2);
  const repaired = await ok(cli(cacheDir, 'pull', url));
  assert.match(repaired.stdout, /downloaded/);
  assert.equal((await ls(cacheDir))[0].bad, null);
  await ok(cli(cacheDir, 'cache', 'verify'));
  await ok(cli(cacheDir, 'disk', 'create', '--from', url, disk));
  assert.ok(same(disk, raw));
});

test('blobs: a blob replaced by a symlink, or truncated, is not handed out', async () => {
  const cacheDir = freshCache();
  await ok(cli(cacheDir, 'pull', url));
  const blob = join(cacheDir, 'blobs', `${digest}.raw`);
  const elsewhere = join(dir, 'elsewhere.raw');
  writeFileSync(elsewhere, readFileSync(blob));
  unlinkSync(blob);
  symlinkSync(elsewhere, blob);
  for (const format of ['raw', 'qcow2']) {
    const r = await cli(
      cacheDir,
      'disk',
      'create',
      '--from',
      digest.slice(0, 8),
      '--format',
      format,
      join(dir, `sym.${format}`),
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /symbolic link/);
  }
  assert.equal((await cli(cacheDir, 'pull', '--offline', url)).status, 2);
  unlinkSync(blob);
  writeFileSync(blob, readFileSync(elsewhere).subarray(0, 4 * MiB));
  const truncated = await cli(
    cacheDir,
    'disk',
    'create',
    '--from',
    digest.slice(0, 8),
    join(dir, 't.raw'),
  );
  assert.equal(truncated.status, 2);
  assert.match(truncated.stderr, /bytes, the record says/);
  await ok(cli(cacheDir, 'pull', url));
  await ok(cli(cacheDir, 'cache', 'verify'));
});

/** A pid that no process has any more. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

test('temporaries: files of dead owners are removed by the next pull and by prune, at once; live ones stay', async () => {
  const cacheDir = freshCache();
  await ok(cli(cacheDir, 'pull', url));
  const layout = new CacheLayout(cacheDir);
  const dead = deadPid();
  const deadFiles = [
    join(layout.tmpDir, `.convert.raw.diskpipe-${dead}-0badcafe.tmp`),
    join(layout.recordsDir, `.x.json.diskpipe-${dead}-00000001.tmp`),
    join(layout.blobsDir, `.y.json.diskpipe-${dead}-00000002.tmp`),
  ];
  const live = join(layout.tmpDir, `.convert.raw.diskpipe-${process.pid}-00000003.tmp`);
  for (const f of [...deadFiles, live]) writeFileSync(f, 'x');
  await ok(cli(cacheDir, 'pull', url));
  for (const f of deadFiles) assert.equal(existsSync(f), false, f);
  assert.ok(existsSync(live), 'a live owner keeps its file');
  writeFileSync(deadFiles[0]!, 'x');
  // An idle partial download of another URL: prune frees it too.
  const part = join(layout.tmpDir, `${urlKey(server.url('other'))}.part`);
  writeFileSync(part, randomBytes(1000));
  const pruned = (await ok(cli(cacheDir, 'cache', 'prune'))).stdout;
  assert.match(pruned, /removed temporary file .*convert\.raw/);
  assert.equal(existsSync(deadFiles[0]!), false);
  assert.equal(existsSync(part), false);
  assert.ok(existsSync(live));
  unlinkSync(live);
});

test('resume: a complete part is used as is (1 byte re-asked), and a 416 for a complete part is accepted', async () => {
  const cacheDir = freshCache();
  const layout = new CacheLayout(cacheDir);
  // Die after the download, at convert: the part is complete.
  const killed = diskpipeAsync(['pull', '--cache-dir', cacheDir, url], {
    env: { DISKPIPE_TEST_PAUSE_AT: 'convert' },
  });
  while (!killed.stderr().includes('test pause at convert')) await sleep(25);
  killed.child.kill('SIGKILL');
  await killed.done;
  const part = join(layout.tmpDir, `${urlKey(url)}.part`);
  const size = statSync(qcow2).size;
  assert.equal(statSync(part).size, size);
  const from = server.log.length;
  await ok(cli(cacheDir, 'pull', url));
  const resumed = server.log.slice(from);
  assert.equal(resumed[0]!.range, `bytes=${size - 1}-`);
  assert.equal(
    resumed.reduce((s, e) => s + e.sent, 0),
    1,
  );
  assert.equal(existsSync(part), false);
  // A part whose metadata lacks the total: Range bytes=<size>- gets 416, checked, used.
  await ok(cli(cacheDir, 'cache', 'rm', url));
  writeFileSync(part, readFileSync(qcow2));
  const head = await fetch(url, { method: 'HEAD' });
  writeFileSync(`${part}.json`, JSON.stringify({ url, etag: head.headers.get('etag') }));
  const before = server.log.length;
  const r = await ok(cli(cacheDir, 'pull', url));
  assert.match(r.stdout, new RegExp(`^${digest}  `));
  const after416 = server.log.slice(before);
  assert.equal(after416[0]!.status, 416);
  assert.equal(after416[1]!.range, `bytes=${size - 1}-`, 'then the validator is confirmed');
  assert.equal(
    after416.reduce((s, e) => s + e.sent, 0),
    1,
    'nothing downloaded again but the last byte',
  );
  assert.equal(readdirSync(layout.tmpDir).length, 0);
});

test('ENOSPC: the part is dropped, so a later small pull still fits', async (t) => {
  const mnt = join(dir, 'small-fs');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3M', 'tmpfs', mnt]);
  t.after(() => execFileSync('umount', [mnt]));
  const big = join(dir, 'big.bin');
  writeFileSync(big, randomBytes(5 * MiB));
  // No Content-Length: a known length that does not fit is refused before the download (a
  // separate check); an unknown one runs into the full filesystem.
  server.files.set('big.bin', { path: big, noLength: true });
  const cacheDir = join(mnt, 'cache');
  const r = await cli(cacheDir, 'pull', server.url('big.bin'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /the cache's filesystem is full \(ENOSPC: no space left on device in /);
  assert.doesNotMatch(r.stderr, /\.part|cache\/tmp/, 'no internal temporary path');
  assert.deepEqual(readdirSync(join(cacheDir, 'tmp')), []);
  const tiny = join(dir, 'tiny.qcow2');
  await qemuImg('create', '-f', 'qcow2', tiny, '1M');
  server.files.set('tiny.qcow2', { path: tiny });
  await ok(cli(cacheDir, 'pull', server.url('tiny.qcow2')));
  const index = new CacheIndex(new CacheLayout(cacheDir));
  assert.equal((await index.sources()).length, 1);
  truncateSync(big, 0);
});

test('ENOSPC while converting a local image: the message says the cache filesystem is full', async (t) => {
  const mnt = join(dir, 'small-fs-convert');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4M', 'tmpfs', mnt]);
  t.after(() => execFileSync('umount', [mnt]));
  const local = join(dir, 'too-big.qcow2');
  await qemuImg('create', '-f', 'qcow2', local, '16M');
  execFileSync('qemu-io', ['-c', 'write -P 0x55 0 8M', local], { stdio: 'ignore' });
  const cacheDir = join(mnt, 'cache');
  const r = await cli(cacheDir, 'pull', local);
  assert.equal(r.status, 2);
  // It named tmp/.convert.raw.diskpipe-<pid>-<hex>.tmp, an internal file the user never chose.
  assert.match(
    r.stderr,
    new RegExp(
      `^diskpipe: the cache's filesystem is full \\(ENOSPC: no space left on device in ${cacheDir}\\) while pulling file://.*too-big\\.qcow2; .*--cache-dir`,
    ),
  );
  assert.doesNotMatch(r.stderr, /\.tmp|convert\.raw/);
  assert.deepEqual(readdirSync(join(cacheDir, 'tmp')), []);
  unlinkSync(local);
});

test('locks: disk create, disk replacement, rm and prune leave no lock files behind', async () => {
  const cacheDir = freshCache();
  const local = join(dir, 'locks.qcow2');
  await qemuImg('create', '-f', 'qcow2', local, '1M');
  for (const name of ['a.raw', 'b.raw', 'c.qcow2']) {
    const dest = join(dir, `locks-${name}`);
    const format = name.endsWith('.qcow2') ? 'qcow2' : 'raw';
    await ok(cli(cacheDir, 'disk', 'create', '--from', local, '--format', format, dest));
    unlinkSync(dest);
  }
  // One lock file per disk path ever made, one per blob and URL: they piled up in locks/.
  const locks = join(cacheDir, 'locks');
  assert.deepEqual(readdirSync(locks), []);
  await ok(cli(cacheDir, 'cache', 'prune', '--drop-missing-pins'));
  await ok(cli(cacheDir, 'cache', 'rm', local));
  assert.deepEqual(readdirSync(locks), []);
  // Files an earlier version left: prune removes the ones nobody holds.
  writeFileSync(join(locks, `disk-${'0'.repeat(64)}.lock`), '');
  await ok(cli(cacheDir, 'cache', 'prune'));
  assert.deepEqual(readdirSync(locks), []);
});

test('a read-only cache: pull and disk create say the cache directory is not writable', async (t) => {
  const cacheDir = freshCache();
  const local = join(dir, 'ro-cache.qcow2');
  await qemuImg('create', '-f', 'qcow2', local, '1M');
  await ok(cli(cacheDir, 'pull', local));
  writeFileSync(join(cacheDir, 'locks', `disk-${'1'.repeat(64)}.lock`), ''); // an older version's
  const ro = join(dir, 'ro-cache-mount');
  mkdirSync(ro);
  execFileSync('mount', ['--bind', cacheDir, ro]);
  t.after(() => execFileSync('umount', [ro]));
  execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
  for (const args of [
    ['pull', local],
    ['disk', 'create', '--from', local, join(dir, 'ro-cache-disk.raw')],
  ]) {
    const r = await cli(ro, ...args);
    assert.equal(r.status, 2, r.stderr);
    // It named an internal file: 'cannot create lock <cache>/locks/url-<sha256>.lock: EROFS'.
    assert.equal(
      r.stderr,
      `diskpipe: cache directory ${ro} is not writable: EROFS: read-only file system\n`,
    );
  }
  // prune has nothing to remove here; the lock file it cannot take is left alone.
  await ok(cli(ro, 'cache', 'prune'));
});

test('cache REF: a pulled local file by its path, show as text or JSON, a too-short prefix', async () => {
  const cacheDir = freshCache();
  const local = join(dir, 'local-ref.qcow2');
  await qemuImg('create', '-f', 'qcow2', local, '2M');
  await ok(cli(cacheDir, 'pull', local));
  const text = await ok(cli(cacheDir, 'cache', 'show', local));
  assert.match(text.stdout, /^digest: +[0-9a-f]{64}\n/);
  assert.match(text.stdout, /source: +file:\/\/.*local-ref\.qcow2\n {2}format: +qcow2/);
  const json = JSON.parse((await ok(cli(cacheDir, 'cache', 'show', '--json', local))).stdout);
  const short = await cli(cacheDir, 'cache', 'show', json.contentDigest.slice(0, 5));
  assert.equal(short.status, 2);
  assert.match(
    short.stderr,
    /digest prefix '[0-9a-f]{5}' is too short: give at least 8 hex digits/,
  );
  await ok(cli(cacheDir, 'cache', 'rm', local));
  assert.equal((await cli(cacheDir, 'cache', 'show', local)).status, 2);
});
