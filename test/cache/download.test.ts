import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { download, parseDigestSpec } from '../../src/cache/download.js';
import { startServer } from '../helpers/http-server.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir();
const data = randomBytes(3 << 20);
const file = join(dir, 'disk.img');
writeFileSync(file, data);
const sha256 = createHash('sha256').update(data).digest('hex');
const server = await startServer();
server.files.set('disk.img', { path: file });
after(() => server.close());

test('download: verifies the digest while streaming', async () => {
  const part = join(dir, 'a.part');
  const r = await download({
    url: server.url('disk.img'),
    partPath: part,
    expected: parseDigestSpec(`sha256:${sha256}`),
  });
  assert.equal(r.size, data.length);
  assert.equal(r.digests.sha256, sha256);
  assert.ok(r.validators.etag);
  assert.deepEqual(readFileSync(part), data);
});

test('download: a wrong digest fails and deletes the partial data', async () => {
  const part = join(dir, 'b.part');
  await assert.rejects(
    download({
      url: server.url('disk.img'),
      partPath: part,
      expected: parseDigestSpec(`sha256:${'0'.repeat(64)}`),
    }),
    {
      code: 'CHECKSUM_MISMATCH',
    },
  );
  assert.equal(existsSync(part), false);
});

test('download: a dropped connection resumes with a Range request', async () => {
  const part = join(dir, 'c.part');
  server.behaviour.dropAfter = 1 << 20;
  await assert.rejects(download({ url: server.url('disk.img'), partPath: part, retries: 0 }), {
    code: 'HTTP',
  });
  server.behaviour.dropAfter = undefined;
  const before = server.log.length;
  const r = await download({ url: server.url('disk.img'), partPath: part });
  assert.equal(r.digests.sha256, sha256);
  // A reset can lose bytes still in flight, so the client resumes from what it really has.
  assert.ok(r.resumedFrom > 0 && r.resumedFrom <= 1 << 20, `resumed from ${r.resumedFrom}`);
  assert.equal(r.fetched, data.length - r.resumedFrom);
  assert.match(server.log[before]!.range ?? '', /^bytes=\d+-$/);
});

test('download: retries transient failures by itself', async () => {
  const part = join(dir, 'd.part');
  server.behaviour.dropAfter = 2 << 20;
  const p = download({ url: server.url('disk.img'), partPath: part, retries: 3 });
  setTimeout(() => {
    server.behaviour.dropAfter = undefined;
  }, 50);
  assert.equal((await p).digests.sha256, sha256);
});

test('download: conditional revalidation answers not-modified', async () => {
  const first = await download({ url: server.url('disk.img'), partPath: join(dir, 'e.part') });
  const again = await download({
    url: server.url('disk.img'),
    partPath: join(dir, 'f.part'),
    revalidate: first.validators,
  });
  assert.equal(again.notModified, true);
});

test('download: HTTP errors are clear', async () => {
  await assert.rejects(
    download({ url: server.url('missing.img'), partPath: join(dir, 'g.part') }),
    { message: /HTTP 404/ },
  );
  assert.throws(() => parseDigestSpec('md5:abc'), { code: 'USAGE' });
});

test('download: the part is written on the calling thread, not one thread-pool request per piece', async () => {
  // 16 MiB of data is 64 writes of WRITE_PIECE: each was a thread-pool round trip that held up
  // the next stage. What is left are the part's open, metadata, size and close.
  const big = randomBytes(16 << 20);
  const path = join(dir, 'big.img');
  writeFileSync(path, big);
  server.files.set('big.img', { path });
  let requests = 0;
  const hook = createHook({
    init: (_id, type) => {
      if (type === 'FSREQPROMISE') requests++;
    },
  }).enable();
  let r: Awaited<ReturnType<typeof download>>;
  try {
    r = await download({ url: server.url('big.img'), partPath: join(dir, 'big.part') });
  } finally {
    hook.disable();
  }
  assert.equal(r.digests.sha256, createHash('sha256').update(big).digest('hex'));
  assert.deepEqual(readFileSync(join(dir, 'big.part')), big);
  assert.ok(requests < 32, `${requests} file requests for 16 MiB`);
});
