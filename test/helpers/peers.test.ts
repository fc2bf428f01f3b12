/** A missing peer fails a test with the peer's name, not with an empty message. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startPeer } from '../nbd/helpers.js';
import { run, runSync } from './peers.js';

test('a missing peer is named in the error (async and sync runs)', async () => {
  await assert.rejects(run('diskpipe-no-such-peer', ['--version']), {
    message: 'peer diskpipe-no-such-peer not found (install diskpipe-no-such-peer)',
  });
  await assert.rejects(
    run('qemu-img-missing', [], { input: '' }),
    /peer qemu-img-missing not found/,
  );
  assert.throws(() => runSync('qemu-img-missing', []), /peer qemu-img-missing not found/);
});

test('a failing peer is named with its stderr', async () => {
  await assert.rejects(run('qemu-img', ['info', '/nonexistent/disk.img']), (err: Error) => {
    assert.match(err.message, /^qemu-img info \/nonexistent\/disk\.img failed: .*No such file/s);
    return true;
  });
});

test('a missing NBD peer is named, not waited for', async () => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await assert.rejects(startPeer('qemu-nbd', ['-k', '/nonexistent/sock'], '/nonexistent/sock'), {
      message: 'peer qemu-nbd not found (install qemu-utils)',
    });
  } finally {
    process.env.PATH = path;
  }
});
