import assert from 'node:assert/strict';
import { copyFileSync, linkSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, run, tempDir } from '../helpers/peers.js';

const dir = tempDir();

async function info(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await qemuImg('info', '--output=json', path));
}

/** An overlay on base.qcow2 with its own data, and its guest content as raw. */
async function overlay(name: string) {
  const base = join(dir, `${name}-base.qcow2`);
  await qemuImg('create', '-f', 'qcow2', base, '4M');
  await qemuIo(base, ['write -P 1 0 4M']);
  const top = join(dir, `${name}.qcow2`);
  await qemuImg('create', '-f', 'qcow2', '-b', `${name}-base.qcow2`, '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 2 1M 64k']);
  await qemuImg('bitmap', '--add', top, 'kept');
  const content = join(dir, `${name}-content.raw`);
  await qemuImg('convert', '-O', 'raw', top, content);
  return { base, top, content };
}

test('rebase -u points an overlay at a moved and converted backing file', async () => {
  const { base, top, content } = await overlay('moved');
  const moved = join(dir, 'moved-base.raw');
  await qemuImg('convert', '-O', 'raw', base, moved);
  const r = diskpipe(['rebase', '-u', '-b', 'moved-base.raw', '-F', 'raw', top]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  const i = await info(top);
  assert.equal(i['backing-filename'], 'moved-base.raw');
  assert.equal(i['backing-filename-format'], 'raw');
  const bitmaps = (i['format-specific'] as { data: { bitmaps: Array<{ name: string }> } }).data;
  assert.deepEqual(
    bitmaps.bitmaps.map((b) => b.name),
    ['kept'],
  ); // other extensions survive
  await qemuImg('check', top);
  await run('qemu-img', ['compare', '-F', 'raw', top, content]);
  // diskpipe reads it back the same way.
  assert.equal(
    diskpipe(['checksum', top]).stdout.split(' ')[0],
    diskpipe(['checksum', content]).stdout.split(' ')[0],
  );
});

test('rebase -u -b "" removes the backing file reference', async () => {
  const { top } = await overlay('standalone');
  const r = diskpipe(['rebase', '-u', '-b', '', top]);
  assert.equal(r.status, 0, r.stderr);
  const i = await info(top);
  assert.equal(i['backing-filename'], undefined);
  assert.equal(i['backing-filename-format'], undefined);
  await qemuImg('check', top);
  const expected = join(dir, 'standalone-expected.raw');
  await qemuImg('create', '-f', 'raw', expected, '4M');
  await qemuIo(expected, ['write -P 2 1M 64k'], 'raw');
  await run('qemu-img', ['compare', '-F', 'raw', top, expected]);
});

test('rebase -u refuses a backing file outside the trusted directories, unchanged', async () => {
  const { top } = await overlay('trust');
  const outside = tempDir('diskpipe-elsewhere-'); // not under the image's directory
  const far = join(outside, 'far.qcow2');
  copyFileSync(join(dir, 'trust-base.qcow2'), far);
  const before = readFileSync(top);
  const r = diskpipe(['rebase', '-u', '-b', far, '-F', 'qcow2', top]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /is outside the image's directory.*; allow it with --allow-backing /);
  assert.ok(readFileSync(top).equals(before));
  const allowed = diskpipe([
    '--allow-backing',
    outside,
    'rebase',
    '-u',
    '-b',
    far,
    '-F',
    'qcow2',
    top,
  ]);
  assert.equal(allowed.status, 0, allowed.stderr);
  assert.equal((await info(top))['backing-filename'], far);
  await qemuImg('check', top);
});

test('rebase refuses what it cannot do, leaving the image unchanged', async () => {
  const { top, content } = await overlay('refuse');
  const before = readFileSync(top);
  const cases: Array<[string[], RegExp]> = [
    // Safe mode writes through the in-place writer, which refuses persistent bitmaps.
    [['rebase', '-b', 'refuse-base.qcow2', '-F', 'qcow2', top], /persistent dirty bitmaps/],
    [['rebase', '-b', 'refuse-base.qcow2', top], /-F FMT is required/],
    [['rebase', '-u', '-b', 'refuse-base.qcow2', top], /-F FMT is required/],
    [['rebase', '-u', '-b', 'refuse-base.qcow2', '-F', 'nope', top], /unknown backing format/],
    [['rebase', '-u', '-b', 'missing.qcow2', '-F', 'qcow2', top], /cannot be opened/],
    [['rebase', '-u', '-b', 'refuse.qcow2', '-F', 'qcow2', top], /its own backing file/],
    [['rebase', '-u', top], /usage/],
    [['rebase', '-u', '-b', 'refuse-base.qcow2', '-F', 'qcow2', content], /qcow2 images only/],
  ];
  for (const [args, message] of cases) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message);
  }
  assert.ok(readFileSync(top).equals(before));
});

test('rebase (-u and safe) refuses a backing file whose chain holds IMAGE: no loop', async () => {
  const { base, top } = await overlay('loop');
  const outer = join(dir, 'loop-outer.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'loop.qcow2', '-F', 'qcow2', outer);
  const before = readFileSync(base);
  for (const backing of ['loop.qcow2', 'loop-outer.qcow2', './loop.qcow2']) {
    for (const unsafe of [['-u'], []]) {
      const args = ['rebase', ...unsafe, '-b', backing, '-F', 'qcow2', base];
      const r = diskpipe(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^diskpipe: .*in the backing chain of .*loop.*\n$/);
      assert.deepEqual(readFileSync(base), before, args.join(' '));
    }
  }
  await run('qemu-img', ['check', top]);
});

test('an image whose own chain loops back to it (also through a hard link): the loop is named, not a lock', async () => {
  // a -> b -> a, and c -> its own hard link: made with qemu-img rebase -u, which allows both.
  const a = join(dir, 'own-loop-a.qcow2');
  const b = join(dir, 'own-loop-b.qcow2');
  await qemuImg('create', '-f', 'qcow2', a, '1M');
  await qemuImg('create', '-f', 'qcow2', '-b', 'own-loop-a.qcow2', '-F', 'qcow2', b);
  await qemuImg('rebase', '-u', '-f', 'qcow2', '-b', 'own-loop-b.qcow2', '-F', 'qcow2', a);
  const c = join(dir, 'own-loop-c.qcow2');
  await qemuImg('create', '-f', 'qcow2', c, '1M');
  linkSync(c, join(dir, 'own-loop-c-link.qcow2'));
  await qemuImg('rebase', '-u', '-f', 'qcow2', '-b', 'own-loop-c-link.qcow2', '-F', 'qcow2', c);
  for (const image of [b, c]) {
    const before = readFileSync(image);
    for (const args of [
      ['rebase', '-b', '', image],
      ['serve', '--writable', '--socket', join(dir, 'own-loop.sock'), image],
    ]) {
      // Before: 'being written by another program ... or read anyway with -U': its own lock.
      const r = diskpipe(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^diskpipe: backing chain loops back to .*own-loop.*\n$/);
      assert.deepEqual(readFileSync(image), before, args.join(' '));
    }
  }
});
