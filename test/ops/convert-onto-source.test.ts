/**
 * convert -n writes DST in place: when DST is the source image itself, or a file in its
 * backing chain, the copy would overwrite what it is reading (a qcow2 converted -O raw onto
 * itself became raw guest data). qemu-img refuses such a pair through its locks.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

function refused(args: string[], files: string[]): void {
  const before = files.map((f) => readFileSync(f));
  const r = diskpipe(args);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^diskpipe: .*source image.*\n$/);
  for (const [i, f] of files.entries()) assert.deepEqual(readFileSync(f), before[i], f);
}

test('convert -n refuses a destination that is the source image (any name for it)', async () => {
  // Preallocated: the file is larger than the virtual size, so no size check stops it.
  const img = join(dir, 'prealloc.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'preallocation=full', img, '4M');
  await qemuIo(img, ['write -P 0x5a 0 1M'], 'qcow2');
  refused(['convert', '-n', '-O', 'raw', img, img], [img]);
  const link = join(dir, 'link.qcow2');
  symlinkSync(img, link);
  refused(['convert', '-n', '-O', 'raw', img, link], [img]);
  refused(['convert', '-n', '-O', 'qcow2', img, link], [img]);
  assert.equal(diskpipe(['check', img]).status, 0);
});

test('convert -n refuses a destination in the source backing chain', async () => {
  const base = join(dir, 'base.raw');
  const overlay = join(dir, 'overlay.qcow2');
  await qemuImg('create', '-q', '-f', 'raw', base, '4M');
  await qemuIo(base, ['write -P 0x11 0 2M'], 'raw');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay);
  await qemuIo(overlay, ['write -P 0x22 1M 1M'], 'qcow2');
  refused(['convert', '-n', '-O', 'raw', overlay, base], [base, overlay]);
  // Without -n the output is a new file renamed over the old name: allowed, as before.
  const copy = join(dir, 'copy.raw');
  assert.equal(diskpipe(['convert', '-O', 'raw', overlay, copy]).status, 0);
  assert.equal(diskpipe(['convert', '-O', 'raw', copy, copy]).status, 0);
});

test('convert refuses a loop device attached to the source image or its backing file', async () => {
  // The device names another inode, but writing it writes the file being read.
  const img = join(dir, 'looped.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'preallocation=full', img, '4M');
  await qemuIo(img, ['write -P 0x5a 0 1M'], 'qcow2');
  const overlay = join(dir, 'looped-overlay.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', img, '-F', 'qcow2', overlay);
  const dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
  try {
    refused(['convert', '-O', 'raw', img, dev], [img]);
    refused(['convert', '-n', '-O', 'raw', img, dev], [img]);
    refused(['convert', '-O', 'raw', overlay, dev], [img, overlay]);
  } finally {
    spawnSync('losetup', ['-d', dev]);
  }
  assert.equal(diskpipe(['check', img]).status, 0);
});
