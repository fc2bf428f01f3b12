import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';
import { startServe, withNbdPeer } from '../nbd/helpers.js';

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

test('convert -n and writable opens (serve --writable) refuse a raw image qemu-nbd has open', async () => {
  const img = join(dir, 'target.raw');
  await qemuImg('create', '-f', 'raw', img, '1M');
  const src = join(dir, 'src.raw');
  await qemuImg('create', '-f', 'raw', src, '1M');
  await refusedWhileServed(img, 'raw', ['convert', '-n', src, img], false);
  // What serve --writable opens: refused while qemu-nbd -r holds the image.
  await withNbdPeer('qemu-nbd', ['-r', '-f', 'raw', img], async () => {
    await assert.rejects(openImage(img, { writable: true, format: 'raw' }), /in use by another/);
  });
  const image = await openImage(img, { writable: true, format: 'raw' });
  await image.close();
});

test('convert, create and clone refuse to replace an image qemu-nbd is writing', async () => {
  const img = join(dir, 'running.qcow2');
  await qemuImg('create', '-f', 'qcow2', img, '64M');
  const src = join(dir, 'new.raw');
  await qemuImg('create', '-f', 'raw', src, '1M');
  // Renaming a new file over it would leave qemu-nbd writing into a deleted file.
  await refusedWhileServed(img, 'qcow2', ['convert', '-O', 'qcow2', src, img], false);
  await refusedWhileServed(img, 'qcow2', ['create', '-f', 'qcow2', img, '1G'], false);
  await refusedWhileServed(img, 'qcow2', ['clone', src, img], false);
  // A reader (qemu-nbd -r) keeps its open file; replacing the name is allowed, as before.
  await withNbdPeer('qemu-nbd', ['-r', '-f', 'qcow2', img], async () => {
    const r = diskpipe(['convert', '-O', 'qcow2', src, img]);
    assert.equal(r.status, 0, r.stderr);
  });
});

test('disk create --force refuses to replace a disk qemu-nbd is writing', async () => {
  const img = join(dir, 'vm-disk.raw');
  await qemuImg('create', '-f', 'raw', img, '1M');
  const src = join(dir, 'golden.raw');
  await qemuImg('create', '-f', 'raw', src, '2M');
  const cache = join(dir, 'cache');
  const args = ['disk', 'create', '--cache-dir', cache, '--from', src, '--force', img];
  await refusedWhileServed(img, 'raw', args, false);
  assert.equal(diskpipe(args).status, 0);
});

test('an image diskpipe serves (read-only, --overlay) is not edited under its clients', async () => {
  const base = join(dir, 'served-base.qcow2');
  const top = join(dir, 'served-top.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '64M');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 0x77 0 1M']);
  for (const mode of [[], ['--overlay']]) {
    const served = await startServe([...mode, '--socket', join(dir, 'ro.sock'), top]);
    try {
      const before = [readFileSync(base), readFileSync(top)];
      // Writing BASE (the backing file) or resizing TOP would change what clients read.
      await assert.rejects(qemuImg('commit', top), /lock/);
      for (const args of [
        ['commit', top],
        ['resize', top, '128M'],
        ['rebase', '-u', '-b', '', top],
      ]) {
        const r = diskpipe(args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^diskpipe: .*in use by another program.*\n$/);
      }
      // Readers share it, as with qemu-nbd -r.
      await qemuImg('info', top);
      assert.deepEqual([readFileSync(base), readFileSync(top)], before);
    } finally {
      await served.stop();
    }
  }
  const r = diskpipe(['commit', top]);
  assert.equal(r.status, 0, r.stderr);
});

test('serve refuses an image another program is writing', async () => {
  const img = join(dir, 'vm-running.qcow2');
  await qemuImg('create', '-f', 'qcow2', img, '64M');
  await withNbdPeer('qemu-nbd', ['-f', 'qcow2', img], async () => {
    const started = await startServe(['--socket', join(dir, 'busy.sock'), img]).then(
      async (served) => {
        await served.stop(); // listening on an image qemu-nbd writes: the defect
        return 'listening';
      },
      (err: Error) => err.message,
    );
    // The reading check (-U turns it off) answers before serve tries to take its read lock.
    assert.match(started, /serve exited 2: diskpipe: .*being written by another program/);
  });
});
