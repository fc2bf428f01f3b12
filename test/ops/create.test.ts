import assert from 'node:assert/strict';
import {
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import '../../src/formats/index.js';
import { diskpipe, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';
import { pattern, writeRuns } from './util.js';

const dir = tempDir();
const MiB = 1024 * 1024;

function ok(r: { status: number | null; stderr: string }) {
  assert.equal(r.status, 0, r.stderr);
}

async function info(path: string) {
  return JSON.parse(await qemuImg('info', '--output=json', path));
}

test('create IMAGE SIZE: a sparse raw file of the exact size', async () => {
  const path = join(dir, 'disk.raw');
  const r = diskpipe(['create', path, '1G']);
  ok(r);
  assert.match(r.stdout, /^Formatting '.*disk\.raw', fmt=raw size=1073741824/);
  assert.equal(statSync(path).size, 1024 * MiB);
  assert.equal(statSync(path).blocks, 0);
  ok(diskpipe(['create', join(dir, 'odd.raw'), '1000']));
  assert.equal(statSync(join(dir, 'odd.raw')).size, 1000);
});

test('create -f qcow2: an empty image qemu accepts and writes into', async () => {
  const path = join(dir, 'empty.qcow2');
  ok(diskpipe(['create', '-f', 'qcow2', path, '10G']));
  await qemuImg('check', '-q', path);
  const i = await info(path);
  assert.equal(i['virtual-size'], 10 * 1024 * MiB);
  assert.equal(i['cluster-size'], 65536);
  assert.equal(i['format-specific'].data.compat, '1.1');
  assert.ok(statSync(path).size < 1 * MiB);
  await qemuIo(path, ['write -P 0x5a 1M 3M', 'write -P 0x33 9G 64k'], 'qcow2');
  await qemuImg('check', '-q', path);
  const out = await qemuIo(path, ['read -P 0x5a 1M 3M', 'read -P 0 0 1M'], 'qcow2');
  assert.doesNotMatch(out, /Pattern verification failed/);
  ok(diskpipe(['create', '-f', 'qcow2', '--cluster-size', '2M', join(dir, 'big.qcow2'), '1T']));
  await qemuImg('check', '-q', join(dir, 'big.qcow2'));
  // qemu reads qcow2 sizes in 512-byte sectors: an odd size is rounded up, as qemu-img does.
  ok(diskpipe(['create', '-f', 'qcow2', join(dir, 'odd.qcow2'), '1000']));
  assert.equal((await info(join(dir, 'odd.qcow2')))['virtual-size'], 1024);
});

test('create -b: a qcow2 overlay qemu-io writes into; relative backing stored as given', async () => {
  const base = sparseFile(join(dir, 'base.raw'), 16 * MiB);
  writeRuns(base, [[0, 16 * MiB]], 2);
  const sub = join(dir, 'vms');
  mkdirSync(sub);
  const overlay = join(sub, 'vm1.qcow2');
  const r = diskpipe(['create', '-b', '../base.raw', overlay]);
  ok(r);
  assert.match(r.stdout, /fmt=qcow2 size=16777216 backing_file=\.\.\/base\.raw backing_fmt=raw/);
  const i = await info(overlay);
  assert.equal(i['virtual-size'], 16 * MiB);
  assert.equal(i['backing-filename'], '../base.raw');
  assert.equal(i['backing-filename-format'], 'raw');
  assert.equal(resolve(i['full-backing-filename']), base);
  await qemuIo(overlay, ['write -P 0x77 4M 128k', 'write -z 8M 64k'], 'qcow2');
  await qemuImg('check', '-q', overlay);
  const flat = join(dir, 'vm1.flat.raw');
  await qemuImg('convert', '-O', 'raw', overlay, flat);
  const expect = pattern(16 * MiB, 0, 2);
  expect.fill(0x77, 4 * MiB, 4 * MiB + 128 * 1024);
  expect.fill(0, 8 * MiB, 8 * MiB + 64 * 1024);
  assert.ok(readFileSync(flat).equals(expect));
  assert.equal(readFileSync(base).equals(pattern(16 * MiB, 0, 2)), true, 'base untouched');
  // An explicit size larger than the backing file.
  const bigger = join(dir, 'bigger.qcow2');
  ok(diskpipe(['create', '-b', 'base.raw', '-F', 'raw', bigger, '32M']));
  assert.equal((await info(bigger))['virtual-size'], 32 * MiB);
  assert.match(await qemuImg('compare', bigger, bigger), /identical/);
});

test('create replaces an existing file atomically; errors leave nothing behind', () => {
  const path = join(dir, 'replace.raw');
  writeFileSync(path, 'old');
  const inode = statSync(path).ino;
  ok(diskpipe(['create', path, '4M']));
  assert.notEqual(statSync(path).ino, inode);
  assert.equal(statSync(path).size, 4 * MiB);
  for (const args of [
    ['create', join(dir, 'nosize.raw')],
    ['create', '-b', 'missing.raw', join(dir, 'x.qcow2')],
    ['create', '-f', 'raw', '-b', 'base.raw', join(dir, 'x.raw')],
    ['create', '-f', 'qed', join(dir, 'x.qed'), '1G'],
    ['create', '-f', 'vmdk', '-b', 'base.raw', join(dir, 'x.vmdk')],
    ['create', '-f', 'vpc', join(dir, 'x.vhd'), '3T'],
    ['create', join(dir, 'x.raw'), 'lots'],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^diskpipe: /);
  }
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('x.') || f.includes('.diskpipe-')),
    [],
  );
});

test('create -b on a qcow2 backing file records its format', async () => {
  const base = join(dir, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '8M');
  await qemuIo(base, ['write -P 0x11 0 1M'], 'qcow2');
  const top = join(dir, 'top.qcow2');
  ok(diskpipe(['create', '-b', 'base.qcow2', top]));
  assert.equal((await info(top))['backing-filename-format'], 'qcow2');
  await qemuIo(top, ['write -P 0x22 512k 64k'], 'qcow2');
  await qemuImg('check', '-q', top);
});

test('create -b / convert -B refuse a DEST that is the backing file or in its chain', async () => {
  const d = join(dir, 'self-backing');
  mkdirSync(d);
  const base = join(d, 'base.qcow2');
  const mid = join(d, 'mid.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '4M');
  await qemuIo(base, ['write -P 0x5a 0 1M']);
  await qemuImg('create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid);
  symlinkSync('base.qcow2', join(d, 'link.qcow2'));
  linkSync(base, join(d, 'hard.qcow2'));
  const src = sparseFile(join(dir, 'self-src.raw'), 4 * MiB);
  const before = readFileSync(base);
  for (const [backing, dest] of [
    ['base.qcow2', base], // the same name
    [base, base], // absolute
    ['./base.qcow2', join(d, 'link.qcow2')], // through a symlink
    ['hard.qcow2', base], // a hard link
    ['mid.qcow2', base], // deeper in the chain
  ] as const) {
    for (const args of [
      ['create', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', dest],
      ['convert', '-O', 'qcow2', '-B', backing, '-F', 'qcow2', src, dest],
    ]) {
      const r = diskpipe(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^diskpipe: .*backing file.*\n$/);
      assert.deepEqual(readFileSync(base), before, args.join(' '));
    }
  }
  assert.deepEqual(readdirSync(d).sort(), ['base.qcow2', 'hard.qcow2', 'link.qcow2', 'mid.qcow2']);
});
