/**
 * `commit`: after it, the base holds the guest content the overlay showed before (qemu-img
 * compare), a qcow2 base passes qemu-img check, and bases it must not write are refused.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

async function overlay(name: string, base: string, baseFmt: string): Promise<string> {
  const path = join(dir, name);
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', baseFmt, path);
  await qemuIo(path, [
    'write -P 0x33 1M 100k',
    'write -z 3M 2M',
    'write -P 0x34 10551296 5000',
    'write -P 0x35 40M 3M',
    'write -c -P 0x36 50M 64k',
  ]);
  return path;
}

async function snapshotRaw(path: string, name: string): Promise<string> {
  const raw = join(dir, name);
  await qemuImg('convert', '-O', 'raw', path, raw);
  return raw;
}

test('commit into a qcow2 backing file (with compressed clusters): base shows the overlay', async () => {
  const base = join(dir, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '64M');
  await qemuIo(base, ['write -P 1 0 8M', 'write -c -P 2 10M 1M', 'write -P 3 60M 1M']);
  const top = await overlay('top.qcow2', 'base.qcow2', 'qcow2');
  const before = await snapshotRaw(top, 'top-before.raw');
  const r = diskpipe(['commit', top]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'Image committed.\n');
  const check = await qemuImg('check', base);
  assert.match(check, /No errors were found/);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', base, before);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', top, before);
});

test('commit into a raw backing file', async () => {
  const base = join(dir, 'rbase.raw');
  await qemuImg('create', '-f', 'raw', base, '64M');
  await qemuIo(base, ['write -P 1 0 8M', 'write -P 9 3M 64k'], 'raw');
  const top = await overlay('rtop.qcow2', 'rbase.raw', 'raw');
  const before = await snapshotRaw(top, 'rtop-before.raw');
  const r = diskpipe(['commit', top]);
  assert.equal(r.status, 0, r.stderr);
  await qemuImg('compare', '-f', 'raw', '-F', 'raw', base, before);
});

test('commit -b BASE: the data of every layer above BASE is written into it', async () => {
  const base = join(dir, 'deep.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '64M');
  await qemuIo(base, ['write -P 1 0 16M']);
  const mid = join(dir, 'mid.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'deep.qcow2', '-F', 'qcow2', mid);
  await qemuIo(mid, ['write -P 7 2M 2M', 'write -z 8M 1M', 'write -P 8 30M 64k']);
  const top = await overlay('deeptop.qcow2', 'mid.qcow2', 'qcow2');
  const before = await snapshotRaw(top, 'deeptop-before.raw');
  const midBefore = readFileSync(mid);
  const r = diskpipe(['commit', '-b', base, top]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(await qemuImg('check', base), /No errors were found/);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', base, before);
  assert.ok(readFileSync(mid).equals(midBefore), 'the intermediate image was changed');
});

test('commit refuses a base in the cache, a read-only base and a base outside the chain', async () => {
  const cache = join(dir, 'cache');
  mkdirSync(join(cache, 'blobs'), { recursive: true });
  const blob = join(cache, 'blobs', `${'a'.repeat(64)}.raw`);
  await qemuImg('create', '-f', 'raw', blob, '16M');
  const pinned = join(dir, 'pinned.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', blob, '-F', 'raw', pinned);
  await qemuIo(pinned, ['write -P 5 0 1M']);
  const blobBefore = readFileSync(blob);
  let r = diskpipe(['commit', '--cache-dir', cache, pinned]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: .*lives in the diskpipe cache/);
  assert.ok(readFileSync(blob).equals(blobBefore));

  const ro = join(dir, 'ro.raw');
  await qemuImg('create', '-f', 'raw', ro, '16M');
  chmodSync(ro, 0o444);
  const roTop = join(dir, 'rotop.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'ro.raw', '-F', 'raw', roTop);
  await qemuIo(roTop, ['write -P 5 0 1M']);
  r = diskpipe(['commit', roTop]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /read-only/);

  r = diskpipe(['commit', '-b', blob, roTop]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /is not in the backing chain/);

  const lone = join(dir, 'lone.qcow2');
  await qemuImg('create', '-f', 'qcow2', lone, '1M');
  r = diskpipe(['commit', lone]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no backing file/);
});
