/**
 * checksum with mapFiles (the CLI's checksum) hashes a raw file through a mapping. A file
 * truncated by another program under a mapping used to end the process with SIGBUS; under
 * the read lease it is hashed through, the truncation waits until the mapped windows in
 * flight are hashed, and the rest is read: a clean 'file ended' error. A file that another
 * descriptor has open for writing cannot be leased, so it is read, not mapped.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { mappedStats } from '../../src/io/mapped-file.js';
import { openImage } from '../../src/open.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { HashPool, InlineHasher } from '../../src/ops/checksum/pool.js';
import { tempDir } from '../helpers/peers.js';
import { dataFile, truncaterOf } from './util.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const pool = new HashPool(2);
after(() => pool.close());

test('a file truncated while its mapped windows are hashed: a clean error, no SIGBUS', async () => {
  const path = dataFile(join(dir, 'truncated.raw'), 512);
  const truncater = truncaterOf(path, MiB);
  const image = await openImage(path);
  let told = false;
  try {
    await assert.rejects(
      checksumImage(image, {
        mapFiles: true,
        hasher: pool,
        onProgress: (p) => {
          if (told || p.done === 0) return;
          told = true;
          truncater.stdin!.write('go\n');
        },
      }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CORRUPT', err.message);
        assert.match(err.message, /truncated\.raw: file ended at \d+/);
        return true;
      },
    );
  } finally {
    await image.close();
  }
  assert.ok(told, 'the truncation started while hashing');
  const [line] = (await once(truncater.stdout!, 'data')) as [Buffer];
  assert.equal(line.toString(), 'truncated\n');
  // The lease is given back: no LEASE line is left for this process.
  assert.doesNotMatch(readFileSync('/proc/locks', 'utf8'), new RegExp(`LEASE.* ${process.pid} `));
});

test('a file open for writing elsewhere cannot be leased: read, not mapped, same digest', async () => {
  const path = dataFile(join(dir, 'written.raw'), 4);
  const image = await openImage(path);
  const expected = await checksumImage(image, { hasher: new InlineHasher() });
  const writer = openSync(path, 'r+');
  try {
    const before = mappedStats.ranges;
    const r = await checksumImage(image, { mapFiles: true, hasher: new InlineHasher() });
    assert.equal(r.digest, expected.digest);
    assert.equal(mappedStats.ranges, before, 'nothing was mapped');
  } finally {
    closeSync(writer);
    await image.close();
  }
  // Without the writer the same file is mapped.
  const again = await openImage(path);
  try {
    const before = mappedStats.ranges;
    await checksumImage(again, { mapFiles: true, hasher: new InlineHasher() });
    assert.ok(mappedStats.ranges > before, 'the windows were mapped');
  } finally {
    await again.close();
  }
});
