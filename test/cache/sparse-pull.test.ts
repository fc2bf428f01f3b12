import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pull } from '../../src/cache/pull.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-sparsepull-');
const server = await startServer();
after(() => server.close());

// 128 MiB raw with 6 MiB of data in pieces that are not 64 KiB aligned, zero 4 KiB pages
// inside the data, and a last byte that makes the size odd (the download is all zero-padded
// bytes on the wire: only the data may reach the disk).
const raw = sparseFile(join(dir, 'disk.raw'), 128 * MiB + 1);
const fd = openSync(raw, 'r+');
let data = 0;
for (const [offset, length] of [
  [4096, 2 * MiB],
  [10 * MiB + 8192, 3 * MiB - 8192],
  [100 * MiB + 4096 * 3, MiB - 4096 * 3],
]) {
  const bytes = randomBytes(length!);
  for (let p = 64 * 1024; p < length!; p += 256 * 1024) bytes.fill(0, p, p + 4096);
  writeSync(fd, bytes, 0, bytes.length, offset);
  for (let p = 0; p < bytes.length; p += 4096)
    if (bytes.subarray(p, p + 4096).some((b) => b !== 0)) data += Math.min(4096, bytes.length - p);
}
writeSync(fd, Buffer.from([7]), 0, 1, 128 * MiB);
data += 1;
closeSync(fd);
server.files.set('disk.raw', { path: raw });
const expected = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;

test('sparse pull: a raw download writes only its data (≤ data + 1%), hashed in the same pass', async () => {
  const cacheDir = join(dir, 'cache');
  const r = await pull(server.url('disk.raw'), { cacheDir });
  assert.equal(r.record.contentDigest, expected);
  assert.equal(r.record.virtualSize, 128 * MiB + 1);
  assert.equal(r.downloaded, 128 * MiB + 1);
  // Counted bytes: the download skipped every zero block and nothing was converted after.
  assert.ok(r.written <= data * 1.01, `wrote ${r.written} bytes for ${data} bytes of data`);
  // Allocated blocks of the stored file tell the same.
  const allocated = statSync(r.path).blocks * 512;
  assert.ok(allocated <= data * 1.01 + 4096, `blob allocates ${allocated} for ${data}`);
  assert.ok(allocated >= data - 4096, `blob allocates ${allocated} for ${data}`);
  const check = diskpipe(['checksum', r.path]);
  assert.equal(check.stdout.split(' ')[0], expected);
  // The download became the blob: no partial download or temporary file is left.
  assert.deepEqual(
    readdirSync(join(cacheDir, 'tmp')).filter((f) => !f.endsWith('.lock')),
    [],
  );
  assert.ok(existsSync(join(cacheDir, 'blobs', `${expected}.raw`)));
});

test('pull: a malformed URL is a usage error, not a crash', async () => {
  await assert.rejects(pull('http://127.0.0.1:80x/disk.raw', { cacheDir: join(dir, 'c2') }), {
    code: 'USAGE',
    message: /invalid URL/,
  });
});
