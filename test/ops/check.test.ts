import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

/** diskpipe check must give qemu-img check's JSON, findings and exit status. */
function sameAsQemu(path: string, extra: string[] = []): number {
  const peer = spawnSync('qemu-img', ['check', '--output=json', ...extra, path], {
    encoding: 'utf8',
  });
  const r = diskpipe(['check', '--json', ...extra, path]);
  assert.equal(r.status, peer.status, `${path}: ${r.stderr}`);
  assert.deepEqual(JSON.parse(r.stdout), JSON.parse(peer.stdout), path);
  const ours = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('diskpipe:'));
  const theirs = peer.stderr.split('\n').filter((l) => l !== '');
  assert.deepEqual(ours, theirs, path);
  // The human form prints what qemu-img check prints.
  const human = spawnSync('qemu-img', ['check', ...extra, path], { encoding: 'utf8' });
  assert.equal(diskpipe(['check', ...extra, path]).stdout, human.stdout);
  return r.status!;
}

function u64(path: string, offset: number): bigint {
  const b = Buffer.alloc(8);
  const fd = openSync(path, 'r');
  readSync(fd, b, 0, 8, offset);
  closeSync(fd);
  return b.readBigUInt64BE(0);
}

function poke(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

function be64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
}

const MASK = 0x00fffffffffffe00n;

/** A 10 MiB qcow2 (64 KiB clusters) with two data clusters, and where its tables are. */
async function small(name: string) {
  const path = join(dir, `${name}.qcow2`);
  await qemuImg('create', '-f', 'qcow2', path, '10M');
  await qemuIo(path, ['write -P 1 0 128k']);
  const l1 = Number(u64(path, 40));
  const l2 = Number(u64(path, l1) & MASK);
  const reftable = Number(u64(path, 48));
  const refblock = Number(u64(path, reftable) & MASK);
  const data = Number(u64(path, l2) & MASK);
  return { path, l1, l2, reftable, refblock, data };
}

test('check equals qemu-img check on clean images of many shapes', async () => {
  const shapes: Array<[string, string[], string[]]> = [
    ['plain', [], ['write -P 1 0 1M', 'write -P 2 5M 64k']],
    ['compressed', [], ['write -c -P 3 0 64k', 'write -c -P 4 128k 64k', 'write 1M 4k']],
    ['tiny', ['-o', 'cluster_size=512'], ['write -P 5 0 100k', 'write -P 6 3M 1k']],
    ['refbits1', ['-o', 'refcount_bits=1'], ['write -P 7 64k 1M']],
    ['refbits64', ['-o', 'refcount_bits=64,cluster_size=4k'], ['write -P 8 0 1M']],
    ['extl2', ['-o', 'extended_l2=on'], ['write -P 9 0 4k', 'write -P 9 1M 100k']],
    ['v2', ['-o', 'compat=0.10'], ['write -P 10 0 1M']],
    ['zeroes', [], ['write -P 11 0 1M', 'write -z 0 512k']],
    ['empty', [], []],
  ];
  for (const [name, opts, writes] of shapes) {
    const path = join(dir, `${name}.qcow2`);
    await qemuImg('create', '-f', 'qcow2', ...opts, path, '8M');
    if (writes.length > 0) await qemuIo(path, writes);
    assert.equal(sameAsQemu(path), 0, name);
  }
});

test('check counts snapshots, bitmaps and backing files as qemu-img check', async () => {
  const base = join(dir, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '8M');
  await qemuIo(base, ['write -P 1 0 2M']);
  const top = join(dir, 'with-snapshots.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 2 0 256k']);
  await qemuImg('snapshot', '-c', 'one', top);
  await qemuIo(top, ['write -P 3 64k 64k', 'write -P 4 4M 64k']);
  await qemuImg('snapshot', '-c', 'two', top);
  await qemuImg('bitmap', '--add', top, 'b0');
  assert.equal(sameAsQemu(top), 0);
});

test('check reports a leaked cluster with exit status 3', async () => {
  const { path, l2 } = await small('leak');
  poke(path, l2 + 8, be64(0n)); // the second data cluster is no longer referenced
  assert.equal(sameAsQemu(path), 3);
  const r = diskpipe(['check', path]);
  assert.match(r.stdout, /1 leaked clusters were found on the image/);
});

test('check reports a used cluster whose refcount is zero as corrupt (exit 2)', async () => {
  const { path, refblock, data } = await small('zero-refcount');
  poke(path, refblock + (data / 65536) * 2, Buffer.from([0, 0]));
  assert.equal(sameAsQemu(path), 2);
});

test('check reports a bumped refcount as a leak and a COPIED-flag corruption', async () => {
  const { path, refblock, data } = await small('bumped');
  poke(path, refblock + (data / 65536) * 2, Buffer.from([0, 2]));
  assert.equal(sameAsQemu(path), 2);
});

test('check finds overlapping metadata, entries past the end and unaligned tables', async () => {
  const overlap = await small('overlap');
  // The second data cluster "is" the L1 table: referenced twice, refcount 1.
  poke(overlap.path, overlap.l2 + 8, be64(BigInt(overlap.l1) | (1n << 63n)));
  assert.equal(sameAsQemu(overlap.path), 2);

  const past = await small('past-eof');
  poke(past.path, past.l2 + 16, be64((1n << 63n) | BigInt(64 * 2 ** 20)));
  assert.equal(sameAsQemu(past.path), 2);

  const unaligned = await small('unaligned-l2');
  poke(unaligned.path, unaligned.l1, be64((1n << 63n) | BigInt(unaligned.l2 + 512)));
  assert.equal(sameAsQemu(unaligned.path), 2);

  const reserved = await small('reserved-bits');
  poke(reserved.path, reserved.l2, be64(u64(reserved.path, reserved.l2) | 2n));
  assert.equal(sameAsQemu(reserved.path), 2);

  const refblock = await small('refblock-outside');
  poke(refblock.path, refblock.reftable + 8, be64(BigInt(1024 * 2 ** 20)));
  assert.equal(sameAsQemu(refblock.path), 2);
});

test('check of an image marked corrupt counts as qemu and notes the flag', async () => {
  const { path } = await small('marked');
  const flags = join(dir, 'marked-copy.qcow2');
  poke(path, 79, Buffer.from([2])); // incompatible feature bit 1: corrupt
  copyFileSync(path, flags);
  assert.equal(sameAsQemu(flags), 0);
  assert.match(diskpipe(['check', flags]).stderr, /marked corrupt/);
});

test('check exits 63 for formats without a check and 1 when it cannot run', async () => {
  const raw = sparseFile(join(dir, 'disk.img'), 2 ** 20);
  const r = diskpipe(['check', raw]);
  assert.equal(r.status, 63);
  assert.match(r.stderr, /raw images have no check/);
  assert.equal(diskpipe(['check', '-f', 'raw', raw]).status, 63);
  const vmdk = join(dir, 'disk.vmdk');
  await qemuImg('create', '-f', 'vmdk', vmdk, '1M');
  assert.equal(diskpipe(['check', vmdk]).status, 63);

  const notQcow = join(dir, 'not.qcow2');
  writeFileSync(notQcow, Buffer.alloc(4096));
  for (const args of [
    ['check'],
    ['check', '--bogus', raw],
    ['check', raw, raw],
    ['check', join(dir, 'missing.qcow2')],
    ['check', '-f', 'qcow2', notQcow],
    ['check', '-f', 'nope', raw],
    ['check', '-r', 'all', raw],
  ]) {
    const bad = diskpipe(args);
    assert.equal(bad.status, 1, args.join(' '));
    assert.match(bad.stderr, /^diskpipe: /);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  }
});

test("check agrees with qemu-img check on diskpipe's own qcow2 outputs", async () => {
  const src = join(dir, 'own-src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '8M');
  await qemuIo(src, ['write -P 1 0 1M', 'write -P 2 6M 128k']);
  for (const extra of [[], ['-c'], ['--cluster-size', '4k']]) {
    const out = join(dir, 'own-out.qcow2');
    const r = diskpipe(['convert', '-O', 'qcow2', ...extra, src, out]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(sameAsQemu(out), 0, extra.join(' '));
    assert.equal(diskpipe(['resize', out, '+1G']).status, 0);
    assert.equal(sameAsQemu(out), 0, `${extra.join(' ')} resized`);
    assert.equal(diskpipe(['resize', '--shrink', out, '2M']).status, 0);
    assert.equal(sameAsQemu(out), 0, `${extra.join(' ')} shrunk`);
  }
});
