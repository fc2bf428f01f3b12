/**
 * Reading commands refuse a local image that another program is writing (qemu-nbd here, as a
 * running VM would: qemu's write lock is held), as qemu-img does; -U (--force-share) reads it
 * anyway. A read-only holder (qemu-nbd -r) does not stop them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { IoError, openImage } from '../../src/index.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';
import { withNbdPeer } from '../nbd/helpers.js';

const dir = tempDir();
const image = join(dir, 'vm.qcow2');
await qemuImg('create', '-q', '-f', 'qcow2', image, '16M');
await qemuIo(image, ['write -P 0x5a 1M 256k'], 'qcow2');

const READERS: [string[], number][] = [
  [['info', image], 2],
  [['map', image], 2],
  [['checksum', image], 2],
  [['compare', image, image], 2],
  [['convert', image, join(dir, 'out.raw')], 2],
  [['measure', '-O', 'qcow2', image], 2],
  [['check', image], 1], // qemu-img check's "could not run"
];
const REFUSED =
  /^diskpipe: \S+: the image is being written by another program.*-U \(--force-share\)\n$/;

test('reading commands refuse an image qemu-nbd has open for writing; -U reads it', async () => {
  const before = diskpipe(['checksum', image]);
  assert.equal(before.status, 0, before.stderr);
  await withNbdPeer('qemu-nbd', ['-f', 'qcow2', image], async () => {
    for (const [args, status] of READERS) {
      const r = diskpipe(args);
      assert.equal(r.status, status, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, REFUSED, args[0]);
      assert.equal(r.stdout, '', args[0]);
      const forced = diskpipe([args[0]!, '-U', ...args.slice(1)]);
      assert.equal(forced.status, 0, `${args[0]} -U: ${forced.stderr}`);
    }
    const long = diskpipe(['checksum', '--force-share', image]);
    assert.equal(long.stdout, before.stdout);
    // The library refuses only when asked (the CLI asks unless -U).
    await assert.rejects(openImage(image, { refuseWritten: true }), (e: Error) => {
      assert.ok(e instanceof IoError);
      assert.match(e.message, /being written by another program/);
      assert.doesNotMatch(e.message, /-U/, 'a CLI flag means nothing to a library caller');
      return true;
    });
    await (await openImage(image)).close();
  });
});

/**
 * Holds `count` shared OFD locks (every other byte of a scratch file) in a child process, so
 * that /proc/locks is long, as on a machine with many VMs or a program holding thousands.
 */
async function withManyLocks(count: number, fn: () => Promise<void>): Promise<void> {
  const crowd = join(dir, 'crowd.bin');
  writeFileSync(crowd, '');
  const native = new URL('../../src/io/native.js', import.meta.url).href;
  const script = [
    "import { openSync } from 'node:fs';",
    `import { ofdShareByte } from ${JSON.stringify(native)};`,
    `const fd = openSync(${JSON.stringify(crowd)}, 'r');`,
    `for (let i = 0; i < ${count}; i++) if (ofdShareByte(fd, 2 * i) !== true) process.exit(3);`,
    "process.stdout.write('locked\\n');",
    'process.stdin.resume();',
  ].join('\n');
  const holder = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
  try {
    assert.equal(line.toString(), 'locked\n');
    await fn();
  } finally {
    holder.stdin!.end();
    await once(holder, 'exit');
  }
}

test('with thousands of locks on the machine (a long /proc/locks) the check still refuses, also without the native layer', async () => {
  await withManyLocks(1500, async () => {
    assert.ok(readFileSync('/proc/locks').length > 64 * 1024, 'a long /proc/locks');
    await withNbdPeer('qemu-nbd', ['-f', 'qcow2', image], async () => {
      for (const env of [{}, { DISKPIPE_NO_NATIVE: '1' }]) {
        for (const [args, status] of READERS) {
          const r = diskpipe(args, { env });
          assert.equal(r.status, status, `${args[0]} ${JSON.stringify(env)}: ${r.stderr}`);
          assert.match(r.stderr, REFUSED, args[0]);
        }
        const forced = diskpipe(['info', '-U', image], { env });
        assert.equal(forced.status, 0, forced.stderr);
      }
    });
    await withNbdPeer('qemu-nbd', ['-r', '-f', 'qcow2', image], async () => {
      for (const env of [{}, { DISKPIPE_NO_NATIVE: '1' }]) {
        for (const [args] of READERS) {
          const r = diskpipe(args, { env });
          assert.equal(r.status, 0, `${args[0]} ${JSON.stringify(env)}: ${r.stderr}`);
        }
      }
    });
  });
});

test('a read-only holder (qemu-nbd -r) does not stop reading commands', async () => {
  await withNbdPeer('qemu-nbd', ['-r', '-f', 'qcow2', image], async () => {
    for (const [args] of READERS) {
      const r = diskpipe(args);
      assert.equal(r.status, 0, `${args[0]}: ${r.stderr}`);
    }
  });
});

test('a backing file qemu-nbd has open for writing is refused as the top image is; -U reads', async () => {
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'overlay.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
  await qemuIo(base, ['write -P 0x33 0 512k'], 'qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
  const readers: [string[], number][] = [
    [['map', overlay], 2],
    [['checksum', overlay], 2],
    [['convert', overlay, join(dir, 'overlay.raw')], 2],
    [['measure', '-O', 'qcow2', overlay], 2],
  ];
  await withNbdPeer('qemu-nbd', ['-f', 'qcow2', base], async () => {
    for (const [args, status] of readers) {
      const r = diskpipe(args);
      assert.equal(r.status, status, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, REFUSED, args[0]);
      assert.match(r.stderr, /base\.qcow2/, args[0]);
      const forced = diskpipe([args[0]!, '-U', ...args.slice(1)]);
      assert.equal(forced.status, 0, `${args[0]} -U: ${forced.stderr}`);
    }
    // info and check look at the top image only (qemu-img info does too).
    assert.equal(diskpipe(['info', overlay]).status, 0);
    assert.equal(diskpipe(['check', overlay]).status, 0);
    await assert.rejects(openImage(overlay, { refuseWritten: true }), IoError);
  });
});

test('a whole-file flock (not a qemu lock) does not stop reading commands', async () => {
  // flock(1) holds the lock until its shell reads a line: `info` runs while it is held.
  const holder = spawn('flock', [image, '-c', 'echo locked; read x'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
  assert.equal(line.toString(), 'locked\n');
  try {
    for (const [args] of READERS) {
      const r = diskpipe(args);
      assert.equal(r.status, 0, `${args[0]}: ${r.stderr}`);
    }
  } finally {
    holder.stdin!.end('\n');
    await once(holder, 'exit');
  }
});

test('rebase (safe) refuses an old backing file qemu-nbd writes, as qemu-img rebase; -U reads it', async () => {
  const base = join(dir, 'rebase-base.qcow2');
  const overlay = join(dir, 'rebase-overlay.qcow2');
  const other = join(dir, 'rebase-new.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
  await qemuIo(base, ['write -P 0x44 0 256k'], 'qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
  await qemuImg('create', '-q', '-f', 'qcow2', other, '16M');
  await withNbdPeer('qemu-nbd', ['-f', 'qcow2', base], async () => {
    const args = ['-b', other, '-F', 'qcow2', overlay];
    const r = diskpipe(['rebase', ...args]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, REFUSED);
    const forced = diskpipe(['rebase', '-U', ...args]);
    assert.equal(forced.status, 0, forced.stderr);
  });
});

test('commit (no -U, as qemu-img commit) refuses a written base or overlay without suggesting -U', async () => {
  const base = join(dir, 'commit-base.qcow2');
  const overlay = join(dir, 'commit-overlay.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
  await qemuIo(overlay, ['write -P 0x66 0 64k'], 'qcow2');
  for (const held of [base, overlay]) {
    await withNbdPeer('qemu-nbd', ['-f', 'qcow2', held], async () => {
      const r = diskpipe(['commit', overlay]);
      assert.equal(r.status, 2, r.stderr);
      // It said 'or read anyway with -U (--force-share)'; 'commit -U' is 'Unknown option'.
      assert.match(r.stderr, /being written by another program.*; stop that program\n$/);
      assert.doesNotMatch(r.stderr, /-U|force-share/);
      assert.match(diskpipe(['commit', '-U', overlay]).stderr, /Unknown option '-U'/);
    });
  }
  const done = diskpipe(['commit', overlay]);
  assert.equal(done.status, 0, done.stderr);
});

test('pull and disk create refuse a local image qemu-nbd writes (nothing cached), as reading commands do', async () => {
  const vm = join(dir, 'pull-vm.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', vm, '16M');
  await qemuIo(vm, ['write -P 0x77 0 64k'], 'qcow2');
  const cache = join(dir, 'pull-cache');
  await withNbdPeer('qemu-nbd', ['-f', 'qcow2', vm], async () => {
    for (const args of [
      ['pull', vm],
      ['disk', 'create', '--from', vm, join(dir, 'pull-vm.raw')],
    ]) {
      // It was cached (a snapshot of a disk in use), then handed out by every later pull.
      const r = diskpipe(['--cache-dir', cache, ...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /being written by another program.*; stop that program\n$/);
    }
    const ls = diskpipe(['--cache-dir', cache, 'cache', 'ls', '--json']);
    assert.deepEqual(JSON.parse(ls.stdout), []);
  });
  const r = diskpipe(['--cache-dir', cache, 'pull', vm]);
  assert.equal(r.status, 0, r.stderr);
});
