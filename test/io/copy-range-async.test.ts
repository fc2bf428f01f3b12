/**
 * copyRangeAsync: copies at the same offsets off the main thread; says 'unsupported' (nothing
 * moved) where the kernel cannot, e.g. into a character device; stops at the source's end.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { copyRangeAsync } from '../../src/io/copy-range-async.js';
import { sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('copies a range at the same offsets; a short source returns what it had', async () => {
  const data = randomBytes(300_000);
  const srcPath = join(dir, 'src.bin');
  writeFileSync(srcPath, data);
  const dstPath = sparseFile(join(dir, 'dst.bin'), 0);
  const src = openSync(srcPath, 'r');
  const dst = openSync(dstPath, 'r+');
  try {
    assert.equal(await copyRangeAsync(src, dst, 4096, 200_000), 200_000);
    assert.equal(await copyRangeAsync(src, dst, 250_000, 100_000), 50_000);
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  const back = readFileSync(dstPath);
  assert.equal(back.length, 300_000);
  assert.ok(back.subarray(0, 4096).equals(Buffer.alloc(4096)));
  assert.ok(back.subarray(4096, 204_096).equals(data.subarray(4096, 204_096)));
  assert.ok(back.subarray(250_000).equals(data.subarray(250_000)));
});

test('into a character device (EINVAL) or a read-only file (EBADF): unsupported', async () => {
  const srcPath = join(dir, 'src2.bin');
  writeFileSync(srcPath, randomBytes(8192));
  const src = openSync(srcPath, 'r');
  const devNull = openSync('/dev/null', 'w');
  const readOnly = openSync(sparseFile(join(dir, 'ro.bin'), 8192), 'r');
  try {
    assert.equal(await copyRangeAsync(src, devNull, 0, 8192), 'unsupported');
    assert.equal(await copyRangeAsync(src, readOnly, 0, 8192), 'unsupported');
  } finally {
    closeSync(src);
    closeSync(devNull);
    closeSync(readOnly);
  }
  assert.ok(readFileSync(join(dir, 'ro.bin')).equals(Buffer.alloc(8192)));
});

test('a real error is named by its errno (EFBIG past the file size limit, not "E27")', () => {
  // ulimit -f is in 1 KiB units; the target exists, so only the copy passes the limit.
  const srcPath = join(dir, 'big-src.bin');
  writeFileSync(srcPath, randomBytes(4 * 1024 * 1024));
  const dstPath = sparseFile(join(dir, 'big-dst.bin'), 4 * 1024 * 1024);
  const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
  const r = spawnSync('/bin/sh', [
    '-c',
    `ulimit -f 1024; exec "$0" "$1" convert -n -f raw -O raw "$2" "$3"`,
    process.execPath,
    main,
    srcPath,
    dstPath,
  ]);
  assert.equal(r.status, 2, r.stderr.toString());
  assert.match(r.stderr.toString(), /^diskpipe: .*EFBIG: file too large\n$/);
});
