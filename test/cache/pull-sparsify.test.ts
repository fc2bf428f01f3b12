/**
 * pull --sparsify and disk create --sparsify: the cached content is the sparsified image (its
 * digest equals `checksum --sparsify` of the source), recorded beside the plain variant, both
 * from one download.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type BuiltDisk, buildDisk } from '../filters/sparsify-disk.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, diskpipeAsync, qemuImg, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-pull-sparsify-');
const server = await startServer();
after(() => server.close());
let disk: BuiltDisk;
let plainDigest: string;
let sparseDigest: string;

before(async () => {
  disk = await buildDisk(
    {
      espMiB: 34,
      rootMiB: 48,
      swapMiB: 4,
      rootFiles: { 'keep.bin': 3 * MiB, 'gone.bin': 8 * MiB },
      rootDeleted: ['gone.bin'],
      espFiles: { 'KEEP.BIN': MiB },
      espDeleted: [],
    },
    dir,
  );
  await qemuImg('convert', '-O', 'qcow2', disk.path, join(dir, 'disk.qcow2'));
  server.files.set('disk.raw', { path: disk.path });
  server.files.set('disk.qcow2', { path: join(dir, 'disk.qcow2') });
  plainDigest = diskpipe(['checksum', disk.path]).stdout.split(' ')[0]!;
  sparseDigest = diskpipe(['checksum', '--sparsify', disk.path]).stdout.split(' ')[0]!;
  assert.notEqual(plainDigest, sparseDigest, 'the deleted file makes a difference');
});

const cli = async (...args: string[]) => {
  const r = await diskpipeAsync(args).done;
  assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

for (const name of ['disk.raw', 'disk.qcow2']) {
  test(`pull --sparsify of ${name}: the sparsified digest, beside the plain variant`, async () => {
    const cacheDir = join(dir, `cache-${name}`);
    const url = server.url(name);
    const sparse = JSON.parse(
      await cli('pull', '--sparsify', '--json', '--cache-dir', cacheDir, url),
    );
    assert.equal(sparse.contentDigest, sparseDigest);
    assert.equal(sparse.url, `${url}#diskpipe-sparsify`);
    const plain = JSON.parse(await cli('pull', '--json', '--cache-dir', cacheDir, url));
    assert.equal(plain.contentDigest, plainDigest);
    const entries = JSON.parse(await cli('cache', 'ls', '--json', '--cache-dir', cacheDir));
    assert.equal(entries.length, 2);
    // Each variant is a cache hit the second time.
    const again = JSON.parse(
      await cli('pull', '--sparsify', '--json', '--cache-dir', cacheDir, url),
    );
    assert.equal(again.hit, true);
    // The sparsified blob allocates less: the deleted file's blocks are holes.
    const blocks = (digest: string) =>
      statSync(join(cacheDir, 'blobs', `${digest}.raw`)).blocks * 512;
    assert.ok(blocks(sparseDigest) < blocks(plainDigest) - 6 * MiB);
    // disk create --sparsify hands out the sparsified variant.
    const dest = join(dir, `vm-${name}.raw`);
    await cli('disk', 'create', '--sparsify', '--from', url, '--cache-dir', cacheDir, dest);
    assert.equal(diskpipe(['checksum', dest]).stdout.split(' ')[0], sparseDigest);
  });
}
