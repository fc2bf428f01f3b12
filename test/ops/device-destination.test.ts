/**
 * Destinations that are not regular files (issue 10, item 1). A block device is written in
 * place and keeps being a block device; its size is checked; a busy (mounted) device is refused
 * with EBUSY; other non-regular destinations are refused by convert, clone and create. Each
 * test attaches its own temporary file with `losetup -f --show` and always detaches it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const FILL = 0xaa;

/**
 * Attaches a file of `size` bytes, each 0xAA, as a loop device and runs `fn`; the device node
 * must still be a block device afterwards. Always detaches it, and first puts the node back if
 * a regression replaced it with a regular file (which would break /dev for everyone else).
 */
async function withLoop(size: number, fn: (dev: string, file: string) => Promise<void> | void) {
  const file = join(dir, `loop-${process.hrtime.bigint()}.img`);
  writeFileSync(file, Buffer.alloc(size, FILL));
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  const { rdev } = statSync(dev);
  try {
    await fn(dev, file);
    assert.ok(statSync(dev).isBlockDevice(), `${dev} is still a block device`);
  } finally {
    if (!statSync(dev, { throwIfNoEntry: false })?.isBlockDevice()) {
      rmSync(dev, { force: true });
      const [major, minor] = [Math.floor(rdev / 256) % 4096, rdev % 256];
      execFileSync('mknod', ['-m', '600', dev, 'b', String(major), String(minor)]);
    }
    spawnSync('losetup', ['-d', dev]);
  }
}

/** An 8 MiB qcow2: data at 1 MiB, an explicit zero cluster at 4 MiB, holes elsewhere. */
async function sample(): Promise<{ qcow2: string; raw: string }> {
  const qcow2 = join(dir, 'sample.qcow2');
  await qemuImg('create', '-f', 'qcow2', qcow2, '8M');
  await qemuIo(qcow2, ['write -P 0x55 1M 1M', 'write -P 0x66 6M 4k', 'write -z 4M 64k'], 'qcow2');
  const raw = join(dir, 'sample-ref.raw');
  await qemuImg('convert', '-O', 'raw', qcow2, raw);
  return { qcow2, raw };
}

function head(path: string, n: number): Buffer {
  return readFileSync(path).subarray(0, n);
}

function readDevice(dev: string, n: number): Buffer {
  return execFileSync('head', ['-c', String(n), dev], { maxBuffer: 1 << 28 });
}

test('convert onto a block device: written in place, same bytes as qemu-img, rest untouched', async () => {
  const { qcow2, raw } = await sample();
  await withLoop(9 * MiB, (dev, file) => {
    const r = diskpipe(['convert', '-O', 'raw', qcow2, dev]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(statSync(dev).isBlockDevice(), 'still a block device');
    // The holes of the image overwrote the 0xAA filling: every byte equals qemu-img's output.
    assert.ok(readDevice(dev, 8 * MiB).equals(readFileSync(raw)));
    // The device is larger than the image: its tail is left alone.
    assert.ok(
      head(file, 9 * MiB)
        .subarray(8 * MiB)
        .equals(Buffer.alloc(MiB, FILL)),
    );
  });
});

test('convert onto a block device with --target-is-zero skips zero ranges', async () => {
  const { qcow2 } = await sample();
  await withLoop(8 * MiB, (dev) => {
    const r = diskpipe(['convert', '--target-is-zero', qcow2, dev]);
    assert.equal(r.status, 0, r.stderr);
    const got = readDevice(dev, 8 * MiB);
    assert.ok(got.subarray(MiB, 2 * MiB).equals(Buffer.alloc(MiB, 0x55)));
    // Zero ranges were not written: the filling is still there.
    assert.equal(got[0], FILL);
    assert.equal(got[4 * MiB], FILL);
  });
});

test('block device without the native layer: size from sysfs, zeroes written', async () => {
  const { qcow2, raw } = await sample();
  await withLoop(8 * MiB, (dev) => {
    const r = diskpipe(['convert', qcow2, dev], { env: { DISKPIPE_NO_NATIVE: '1' } });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(readDevice(dev, 8 * MiB).equals(readFileSync(raw)));
  });
});

test('a block device smaller than the image: clear error, device untouched', async () => {
  const { qcow2, raw } = await sample();
  await withLoop(4 * MiB, (dev) => {
    for (const args of [
      ['convert', qcow2, dev],
      ['clone', raw, dev],
    ]) {
      const r = diskpipe(args);
      assert.equal(r.status, 2, args.join(' '));
      assert.match(r.stderr, /^diskpipe: .* is too small: the device has 4194304 bytes/);
      assert.ok(readDevice(dev, 4 * MiB).equals(Buffer.alloc(4 * MiB, FILL)));
    }
  });
});

test('a mounted block device is refused with EBUSY', async () => {
  const { qcow2, raw } = await sample();
  await withLoop(16 * MiB, (dev) => {
    execFileSync('mkfs.ext4', ['-q', '-F', dev]);
    const mnt = join(dir, `mnt-${process.hrtime.bigint()}`);
    mkdirSync(mnt);
    execFileSync('mount', [dev, mnt]);
    try {
      for (const args of [
        ['convert', qcow2, dev],
        ['clone', raw, dev],
      ]) {
        const r = diskpipe(args);
        assert.equal(r.status, 2, args.join(' '));
        assert.match(r.stderr, /^diskpipe: cannot open .* for writing: EBUSY/);
        assert.equal(r.stderr.trim().split('\n').length, 1);
      }
    } finally {
      spawnSync('umount', [mnt]);
    }
    // Still the filesystem it was.
    assert.match(
      execFileSync('blkid', ['-o', 'value', '-s', 'TYPE', dev], { encoding: 'utf8' }),
      /ext4/,
    );
  });
});

test('clone onto a block device: every byte of the file, holes zeroed', async () => {
  const src = sparseFile(join(dir, 'clone-src.raw'), 8 * MiB);
  await qemuIo(src, ['write -P 0x77 2M 3M', 'write -P 0 6M 1M'], 'raw');
  await withLoop(8 * MiB, (dev) => {
    const r = diskpipe(['clone', src, dev]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(statSync(dev).isBlockDevice());
    assert.ok(readDevice(dev, 8 * MiB).equals(readFileSync(src)));
  });
});

test('create refuses a block device', async () => {
  await withLoop(MiB, (dev) => {
    const r = diskpipe(['create', dev, '1M']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^diskpipe: cannot write to .*: it is a block device/);
    assert.ok(statSync(dev).isBlockDevice());
    assert.ok(readDevice(dev, MiB).equals(Buffer.alloc(MiB, FILL)));
  });
});

test('FIFO, character device, directory and socket destinations are refused', async () => {
  const { qcow2, raw } = await sample();
  const nodes = join(dir, 'nodes');
  mkdirSync(nodes);
  const fifo = join(nodes, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const chr = join(nodes, 'null');
  execFileSync('mknod', [chr, 'c', '1', '3']);
  const sub = join(nodes, 'subdir');
  mkdirSync(sub);
  const sock = join(nodes, 'sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  try {
    const cases: [string, string, (p: string) => boolean][] = [
      [fifo, 'a FIFO', (p) => statSync(p).isFIFO()],
      [chr, 'a character device', (p) => statSync(p).isCharacterDevice()],
      [sub, 'a directory', (p) => statSync(p).isDirectory()],
      [sock, 'a socket', (p) => statSync(p).isSocket()],
    ];
    for (const [dst, what, still] of cases) {
      for (const args of [
        ['convert', qcow2, dst],
        ['clone', raw, dst],
        ['create', dst, '1M'],
      ]) {
        const r = diskpipe(args);
        assert.equal(r.status, 2, args.join(' '));
        assert.equal(
          r.stderr,
          `diskpipe: cannot write to ${dst}: it is ${what} ${
            args[0] === 'create'
              ? '(the destination must be a regular file)'
              : '(the destination must be a regular file or a block device)'
          }\n`,
        );
        assert.ok(still(dst), `${dst} unchanged`);
      }
    }
    assert.deepEqual(readdirSync(nodes).sort(), ['fifo', 'null', 'sock', 'subdir']);
    assert.deepEqual(readdirSync(sub), []);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('convert to stdout still works', async () => {
  const { qcow2, raw } = await sample();
  const r = spawnSync(
    process.execPath,
    [new URL('../../src/cli/main.js', import.meta.url).pathname, 'convert', qcow2, '-'],
    { maxBuffer: 1 << 28 },
  );
  assert.equal(r.status, 0, r.stderr.toString());
  assert.ok(r.stdout.equals(readFileSync(raw)));
});

test('an odd-sized image onto a block device: unaligned zero tail written, rest untouched', async () => {
  const size = 3 * MiB + 1000;
  const src = sparseFile(join(dir, 'odd.raw'), size);
  await qemuIo(src, ['write -P 0x44 512k 100k'], 'raw');
  await withLoop(4 * MiB, (dev) => {
    for (const env of [{}, { DISKPIPE_NO_NATIVE: '1' }]) {
      const r = diskpipe(['convert', '-f', 'raw', src, dev], { env });
      assert.equal(r.status, 0, r.stderr);
      const got = readDevice(dev, 4 * MiB);
      assert.ok(got.subarray(0, size).equals(readFileSync(src)));
      assert.ok(got.subarray(size).equals(Buffer.alloc(4 * MiB - size, FILL)));
    }
  });
});

test('convert -n onto a block device is the same in-place write; -O qcow2 onto one is refused', async () => {
  const { qcow2, raw } = await sample();
  await withLoop(8 * MiB, (dev) => {
    const refused = diskpipe(['convert', '-O', 'qcow2', qcow2, dev]);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /^diskpipe: only raw output can be written onto the block device/);
    assert.ok(readDevice(dev, 8 * MiB).equals(Buffer.alloc(8 * MiB, FILL)));
    const r = diskpipe(['convert', '-n', qcow2, dev]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(readDevice(dev, 8 * MiB).equals(readFileSync(raw)));
  });
});
