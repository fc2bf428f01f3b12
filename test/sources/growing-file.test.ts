import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { GrowingFile } from '../../src/sources/growing-file.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-growing-');

test('growing file: bytes the download passed as skipped zero blocks read as zeroes, not as a short read', async () => {
  // The download wrote 8 KiB of data, then skipped two zero blocks without extending the
  // file yet (the sparse writer moves the size only now and then): it says 16 KiB are in.
  const path = join(dir, 'part');
  writeFileSync(path, Buffer.alloc(8192, 0x5a));
  const growing = new GrowingFile(path, 'test');
  try {
    growing.attempt(0, 65536);
    growing.advance(16384);
    const buf = Buffer.alloc(12288, 0xff);
    assert.equal(await growing.read(buf, 4096), 12288);
    assert.ok(buf.subarray(0, 4096).every((b) => b === 0x5a));
    assert.ok(buf.subarray(4096).every((b) => b === 0));
    // Past what the download passed, a read still waits (here: the download fails).
    const pending = growing.read(Buffer.alloc(4096), 16384);
    growing.end();
    await assert.rejects(pending, /ended early/);
  } finally {
    await growing.close();
  }
});
