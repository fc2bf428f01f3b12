import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';
import { withNbdPeer } from '../nbd/helpers.js';

const dir = tempDir();

/** While qemu-nbd has the image open, an in-place edit is refused and changes no byte. */
async function refusedWhileServed(image: string, format: string, args: string[], ro: boolean) {
  const before = readFileSync(image);
  await withNbdPeer('qemu-nbd', [...(ro ? ['-r'] : []), '-f', format, image], async () => {
    const r = diskpipe(args);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^diskpipe: .*in use by another program.*\n$/);
    assert.equal(r.stdout, '');
  });
  assert.deepEqual(readFileSync(image), before);
}

test('resize refuses an image a qemu process has open (writable or read-only)', async () => {
  const img = join(dir, 'served.qcow2');
  await qemuImg('create', '-f', 'qcow2', img, '64M');
  await refusedWhileServed(img, 'qcow2', ['resize', img, '1G'], false);
  await refusedWhileServed(img, 'qcow2', ['resize', '--shrink', img, '32M'], true);
  const raw = join(dir, 'served.raw');
  await qemuImg('create', '-f', 'raw', raw, '1M');
  await refusedWhileServed(raw, 'raw', ['resize', raw, '2M'], false);
  // Once qemu has let go, the same resize works.
  const r = diskpipe(['resize', img, '1G']);
  assert.equal(r.status, 0, r.stderr);
});

test('rebase -u refuses an image a qemu process has open', async () => {
  const base = join(dir, 'base.qcow2');
  const img = join(dir, 'overlay.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '64M');
  await qemuImg('create', '-f', 'qcow2', img, '64M');
  await refusedWhileServed(img, 'qcow2', ['rebase', '-u', '-b', base, '-F', 'qcow2', img], false);
});
