/**
 * A server that changes a file's length but not its validator (a fixed Last-Modified) between
 * a dropped download and its resume: the part is not spliced onto the new version; the download
 * starts over and holds exactly the new bytes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { download } from '../../src/cache/download.js';
import { startServer } from '../helpers/http-server.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('download: a resume that finds another length under the same validator starts over', async () => {
  const file = join(dir, 'disk.img');
  writeFileSync(file, randomBytes(3 << 20));
  const server = await startServer({ dropAfter: 1 << 20 });
  const lastModified = 'Mon, 07 Dec 2026 00:00:00 GMT';
  server.files.set('disk.img', { path: file, etag: false, lastModified });
  try {
    const part = join(dir, 'disk.part');
    await assert.rejects(download({ url: server.url('disk.img'), partPath: part, retries: 0 }), {
      code: 'HTTP',
    });
    const shorter = randomBytes((1 << 20) + 4096);
    writeFileSync(file, shorter);
    server.behaviour.dropAfter = undefined;
    const r = await download({ url: server.url('disk.img'), partPath: part });
    assert.equal(r.size, shorter.length);
    assert.equal(r.digests.sha256, createHash('sha256').update(shorter).digest('hex'));
    assert.deepEqual(readFileSync(part), shorter);
  } finally {
    await server.close();
  }
});
