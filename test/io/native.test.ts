import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  copyFileRange,
  ficlone,
  nativeStatus,
  punchHole,
  seekDataHole,
  setNativeEnabled,
  zeroRange,
} from '../../src/io/native.js';
import { diskpipe, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;

function withData(name: string): string {
  const path = sparseFile(join(dir, name), 8 * MiB);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(MiB, 7), 0, MiB, 2 * MiB);
  closeSync(fd);
  return path;
}

test('native: the syscall layer runs on Linux and finds data and holes', async () => {
  assert.deepEqual(nativeStatus(), { native: true, reason: 'koffi/libc' });
  const path = withData('seek.raw');
  const fd = openSync(path, 'r+');
  try {
    assert.equal(seekDataHole(fd, 0, 'data'), 2 * MiB);
    assert.equal(seekDataHole(fd, 2 * MiB, 'hole'), 3 * MiB);
    assert.equal(seekDataHole(fd, 3 * MiB, 'data'), 'eof');
    assert.equal(await punchHole(fd, 2 * MiB, MiB / 2), true);
    assert.equal(seekDataHole(fd, 0, 'data'), 2 * MiB + MiB / 2);
    assert.equal(await zeroRange(fd, 2 * MiB + MiB / 2, 4096), true);
    const out = sparseFile(join(dir, 'copy.raw'), 8 * MiB);
    const outFd = openSync(out, 'r+');
    assert.equal(await copyFileRange(fd, outFd, 2 * MiB, MiB), MiB);
    assert.equal(typeof ficlone(outFd, fd), 'boolean'); // false on ext4/tmpfs, true on XFS
    closeSync(outFd);
    assert.ok(
      readFileSync(out)
        .subarray(2 * MiB, 3 * MiB)
        .equals(readFileSync(path).subarray(2 * MiB, 3 * MiB)),
    );
  } finally {
    closeSync(fd);
  }
});

test('native: without the native layer everything still works (zeroes found by reading)', () => {
  const env = { DISKPIPE_NO_NATIVE: '1' };
  const src = withData('fallback.raw');
  assert.match(diskpipe(['--version', '--verbose'], { env }).stdout, /portable fallbacks/);
  const map = JSON.parse(diskpipe(['map', '--json', src], { env }).stdout);
  assert.deepEqual(
    map.map((e: { data: boolean }) => e.data),
    [true],
    'a file that cannot report holes is all data',
  );
  const out = join(dir, 'fallback-out.raw');
  const r = diskpipe(['convert', src, out], { env });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(readFileSync(out).equals(readFileSync(src)));
  assert.ok(
    statSync(out).blocks * 512 <= 2 * MiB,
    'output stays sparse: zero blocks found while reading',
  );
});

test('native: turned off and on again in one process, the system calls come back', () => {
  const path = withData('switch.raw');
  const fd = openSync(path, 'r');
  try {
    const before = seekDataHole(fd, 0, 'data');
    setNativeEnabled(false);
    assert.equal(seekDataHole(fd, 0, 'data'), 'unsupported');
    assert.equal(nativeStatus().native, false);
    // Regression: re-enabling reloaded libc, whose koffi types were then defined twice.
    setNativeEnabled(true);
    assert.deepEqual(nativeStatus(), { native: true, reason: 'koffi/libc' });
    assert.equal(seekDataHole(fd, 0, 'data'), before);
  } finally {
    closeSync(fd);
  }
});
