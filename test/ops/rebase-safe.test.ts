/**
 * Safe rebase: IMAGE shows the same guest content before and after moving onto a new backing
 * file (qemu-img compare), passes qemu-img check, and a NEW refused by the trust rule changes
 * nothing. Through the CLI, and once through the library with qemu-img rebase -u doing the
 * header rewrite (the data step checked on its own).
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskpipeError } from '../../src/errors.js';
import { type ReferenceWriter, rebaseSafe } from '../../src/ops/rebase-safe.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

const qemuRewrite: ReferenceWriter = async (path, backing, opts) => {
  const fmt = opts.backingFormat ? ['-F', opts.backingFormat] : [];
  await qemuImg('rebase', '-u', '-f', 'qcow2', '-b', backing, ...fmt, path);
};

async function info(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await qemuImg('info', '--output=json', path)) as Record<string, unknown>;
}

async function chain(name: string, opts = 'compat=1.1') {
  const old = join(dir, `${name}-old.qcow2`);
  await qemuImg('create', '-f', 'qcow2', old, '32M');
  await qemuIo(old, [
    'write -P 1 0 4M',
    'write -c -P 2 8M 1M',
    'write -z 12M 1M',
    'write -P 3 20M 64k',
  ]);
  const next = join(dir, `${name}-new.raw`);
  await qemuImg('create', '-f', 'raw', next, '24M');
  await qemuIo(
    next,
    ['write -P 1 0 2M', 'write -P 9 2M 2M', 'write -P 2 8M 512k', 'write -P 8 12M 64k'],
    'raw',
  );
  const top = join(dir, `${name}.qcow2`);
  await qemuImg('create', '-f', 'qcow2', '-o', opts, '-b', `${name}-old.qcow2`, '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 5 1M 100k', 'write -z 3M 64k', 'write -P 6 8388608 4096']);
  const before = join(dir, `${name}-before.raw`);
  await qemuImg('convert', '-O', 'raw', top, before);
  return { top, next, before };
}

for (const [name, opts] of [
  ['v3', 'compat=1.1'],
  ['v2', 'compat=0.10'],
  ['small', 'cluster_size=512'],
]) {
  test(`safe rebase onto a different backing file keeps the guest content (${name})`, async () => {
    const { top, before } = await chain(`rb-${name}`, opts);
    const r = diskpipe(['rebase', '-b', `rb-${name}-new.raw`, '-F', 'raw', top]);
    assert.equal(r.status, 0, r.stderr);
    const i = await info(top);
    assert.equal(i['backing-filename'], `rb-${name}-new.raw`);
    assert.equal(i['backing-filename-format'], 'raw');
    assert.match(await qemuImg('check', top), /No errors were found/);
    await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', top, before);
  });
}

test("safe rebase -b '' flattens the image", async () => {
  const { top, before } = await chain('flat');
  const r = await rebaseSafe(top, '', {}, qemuRewrite);
  // Flattening: every byte the old backing showed (but its zeroes) is written.
  assert.ok(r.bytesWritten > 0 && r.bytesWritten <= r.bytesCompared);
  assert.equal((await info(top))['backing-filename'], undefined);
  assert.match(await qemuImg('check', top), /No errors were found/);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', top, before);
});

test('safe rebase refuses a NEW outside the trusted directories and changes nothing', async () => {
  const { top } = await chain('trust');
  const elsewhere = tempDir('diskpipe-elsewhere-');
  const outside = join(elsewhere, 'new.raw');
  copyFileSync(join(dir, 'trust-new.raw'), outside);
  const bytes = readFileSync(top);
  await assert.rejects(
    rebaseSafe(top, outside, { backingFormat: 'raw' }),
    (err: unknown) => err instanceof DiskpipeError && /--allow-backing/.test(err.message),
  );
  assert.ok(readFileSync(top).equals(bytes));
  // Allowed explicitly, it works.
  const r = diskpipe(['rebase', '--allow-backing', elsewhere, '-b', outside, '-F', 'raw', top]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((await info(top))['backing-filename'], outside);
});
