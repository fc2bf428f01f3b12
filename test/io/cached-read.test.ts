/**
 * LocalFile.read copies page-cached data at once (preadv2 RWF_NOWAIT) and reads the rest through
 * the thread pool: both paths, and a read that starts cached and ends on disk, give the file's
 * bytes; reads at and past the end stop there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalFile } from '../../src/io/file.js';
import { nativeStatus, readCached } from '../../src/io/native.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir();
const SIZE = 8 * 1024 * 1024 + 123;

function makeFile(name: string): { path: string; bytes: Buffer } {
  const path = join(dir, name);
  const bytes = randomBytes(SIZE);
  writeFileSync(path, bytes);
  const fd = openSync(path, 'r');
  fsyncSync(fd); // clean pages can be dropped from the cache
  closeSync(fd);
  return { path, bytes };
}

/** Asks the kernel to drop the file's cached pages (GNU dd: posix_fadvise DONTNEED). */
function dropCache(path: string): void {
  execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/**
 * Drops the file's cached pages and probes the page at `offset` without waiting. Pages still
 * under readahead I/O (this machine reads ahead 8 MiB; a busy disk is slow) cannot be dropped,
 * so the advice is repeated while that page is still served. Returns the last probe.
 */
function dropCacheAt(path: string, fd: number, offset: number): ReturnType<typeof readCached> {
  let probe: ReturnType<typeof readCached> = 0;
  for (let i = 0; i < 20; i++) {
    dropCache(path);
    probe = readCached(fd, Buffer.alloc(4096), offset);
    if (typeof probe !== 'number') break;
  }
  return probe;
}

test('cached, uncached and partly cached reads give the file bytes', async () => {
  const { path, bytes } = makeFile('data.bin');
  const f = await LocalFile.open(path);
  try {
    const check = async (offset: number, length: number) => {
      const buf = Buffer.alloc(length, 0xee);
      const n = await f.read(buf, offset);
      const want = bytes.subarray(offset, offset + length);
      assert.equal(n, want.length);
      assert.ok(buf.subarray(0, n).equals(want), `bytes at ${offset}+${length}`);
    };
    // A file's first reads go the usual way (a few header reads never load the native layer).
    for (let i = 0; i < 16; i++) await check(i * 4096, 4096);
    if (nativeStatus().native) {
      // Where the native layer runs, dropped pages are not served without waiting.
      const probe = dropCacheAt(path, f.fd, 4 * 1024 * 1024);
      assert.ok(probe === 'again' || probe === 'unsupported', `probe gave ${probe}`);
    } else dropCache(path);
    await check(4 * 1024 * 1024, 1024 * 1024); // from disk
    await check(4 * 1024 * 1024, 1024 * 1024); // now cached
    await check(3 * 1024 * 1024 + 17, 3 * 1024 * 1024); // cached middle, disk at both ends
    // Cached at the start, on disk further on: the cached part is copied, the rest read.
    dropCache(path);
    await check(1024 * 1024, 4096);
    if (nativeStatus().native) {
      let n = readCached(f.fd, Buffer.alloc(4 * 1024 * 1024), 1024 * 1024);
      // Pages still under an earlier readahead's I/O cannot be dropped: advise again.
      for (let i = 0; i < 20 && n === 4 * 1024 * 1024; i++) {
        dropCache(path);
        await check(1024 * 1024, 4096);
        n = readCached(f.fd, Buffer.alloc(4 * 1024 * 1024), 1024 * 1024);
      }
      assert.ok(typeof n === 'number' && n > 0 && n < 4 * 1024 * 1024, `cached part ${n}`);
    }
    await check(1024 * 1024, 4 * 1024 * 1024);
    await check(SIZE - 1000, 1000);
    await check(SIZE - 1000, 5000); // short at the end
    assert.equal(await f.read(Buffer.alloc(10), SIZE), 0);
    assert.equal(await f.read(Buffer.alloc(10), SIZE + 100), 0);
  } finally {
    await f.close();
  }
});

test('readCached reports how much of a cached range it read', () => {
  const { path, bytes } = makeFile('cached.bin');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    assert.equal(readCached(fd, buf, 1000), buf.length);
    assert.ok(buf.equals(bytes.subarray(1000, 1000 + buf.length)));
    assert.equal(readCached(fd, buf, SIZE - 10), 10);
    assert.equal(readCached(fd, buf, SIZE), 0);
  } finally {
    closeSync(fd);
  }
});
