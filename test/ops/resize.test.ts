import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, run, tempDir } from '../helpers/peers.js';

const dir = tempDir();

/** Resizes a copy with diskpipe and one with qemu-img; both must check clean and compare equal. */
async function againstQemu(name: string, create: string[], writes: string[], size: string) {
  const ours = join(dir, `${name}.qcow2`);
  const theirs = join(dir, `${name}-qemu.qcow2`);
  await qemuImg('create', '-f', 'qcow2', ...create, ours);
  if (writes.length > 0) await qemuIo(ours, writes);
  copyFileSync(ours, theirs);
  const r = diskpipe(['resize', ours, size]);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
  assert.equal(r.stdout, 'Image resized.\n');
  await qemuImg('resize', theirs, size);
  await qemuImg('check', ours); // exits non-zero on leaks or corruption
  assert.equal((await qemuImg('compare', ours, theirs)).trim(), 'Images are identical.');
  const info = JSON.parse(await qemuImg('info', '--output=json', ours));
  const ref = JSON.parse(await qemuImg('info', '--output=json', theirs));
  assert.equal(info['virtual-size'], ref['virtual-size']);
  // The grown image stays writable by qemu and clean afterwards.
  await qemuIo(ours, [`write -P 0x5a ${info['virtual-size'] - 65536} 64k`]);
  await qemuImg('check', ours);
  return ours;
}

test('resize grows a qcow2 whose L1 table still fits its cluster', async () => {
  await againstQemu('fits', ['-o', 'size=1G'], ['write -P 1 0 1M', 'write -P 2 700M 64k'], '+9G');
});

test('resize relocates the L1 table when it outgrows its clusters (512-byte clusters)', async () => {
  await againstQemu(
    'relocate',
    ['-o', 'cluster_size=512,size=1M'],
    ['write -P 7 0 10k', 'write -P 9 900k 3k'],
    '+20M',
  );
});

test('resize adds a refcount block when the new L1 table crosses into an uncovered range', async () => {
  // 512-byte clusters, 16-bit refcounts: one refcount block covers 256 clusters (128 KiB);
  // 120 KiB of data puts the end of the file just before that boundary.
  await againstQemu('refblock', ['-o', 'cluster_size=512,size=1M'], ['write -P 3 0 120k'], '64M');
});

test('resize handles 1-bit refcounts and extended L2 entries', async () => {
  await againstQemu(
    'refbits',
    ['-o', 'cluster_size=512,refcount_bits=1,size=1M'],
    ['write -P 4 0 60k'],
    '+30M',
  );
  await againstQemu(
    'extl2',
    ['-o', 'cluster_size=16k,extended_l2=on,size=64M'],
    ['write -P 5 0 100k', 'write -P 6 40M 4k'],
    '+40G',
  );
});

test('resize grows a qcow2 with a backing file and a snapshot', async () => {
  const base = join(dir, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '4M');
  await qemuIo(base, ['write -P 8 0 4M']);
  const top = join(dir, 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4k', '-b', base, '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 9 1M 8k']);
  await qemuImg('snapshot', '-c', 'snap', top);
  const ref = join(dir, 'top-ref.raw');
  await qemuImg('convert', '-O', 'raw', top, ref);
  const r = diskpipe(['resize', top, '+2T']);
  assert.equal(r.status, 0, r.stderr);
  await qemuImg('check', top);
  const info = JSON.parse(await qemuImg('info', '--output=json', top));
  assert.equal(info['virtual-size'], 4 * 2 ** 20 + 2 * 2 ** 40);
  assert.equal(info.snapshots.length, 1);
  await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', top, ref]);
});

test('resize truncates raw files exactly and needs --shrink to cut them', () => {
  const raw = join(dir, 'disk.img');
  writeFileSync(raw, Buffer.alloc(3000, 1));
  assert.equal(diskpipe(['resize', raw, '+10']).status, 0);
  assert.equal(statSync(raw).size, 3010);
  const refused = diskpipe(['resize', raw, '-10']);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /^diskpipe: use --shrink/);
  assert.equal(statSync(raw).size, 3010);
  const cut = diskpipe(['resize', '--shrink', raw, '-10']);
  assert.equal(cut.status, 0, cut.stderr);
  assert.equal(statSync(raw).size, 3000);
  assert.equal(diskpipe(['resize', '-q', '-f', 'raw', raw, '1G']).stdout, '');
  assert.equal(statSync(raw).size, 2 ** 30);
});

test('resize takes a negative size after "--", as qemu-img resize does', () => {
  const raw = join(dir, 'dashdash.img');
  writeFileSync(raw, Buffer.alloc(3000, 1));
  const r = diskpipe(['resize', '--shrink', raw, '--', '-1000']);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
  assert.equal(statSync(raw).size, 2000);
  assert.equal(diskpipe(['resize', '--shrink', '--', raw, '-1000']).status, 0);
  assert.equal(statSync(raw).size, 1000);
});

test('resize refuses bad sizes and other formats clearly', async () => {
  const q = join(dir, 'small.qcow2');
  await qemuImg('create', '-f', 'qcow2', q, '1M');
  const cases: Array<[string[], RegExp]> = [
    [['resize', q, '1000001'], /use --shrink/],
    [['resize', q, '2000001'], /multiple of 512/],
    [['resize', q, '0'], /must be positive/],
    [['resize', q, 'big'], /invalid size/],
    [['resize', '-f', 'vmdk', q, '2M'], /cannot resize 'vmdk'/],
  ];
  for (const [args, message] of cases) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n.+\n/);
  }
  // Persistent bitmaps are sized for the old size: refused, the image still opens in qemu.
  const bitmaps = join(dir, 'bitmaps.qcow2');
  await qemuImg('create', '-f', 'qcow2', bitmaps, '1M');
  await qemuImg('bitmap', '--add', bitmaps, 'b0');
  const r = diskpipe(['resize', bitmaps, '100G']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /persistent dirty bitmaps is not implemented/);
  await qemuImg('check', bitmaps);
  const vmdk = join(dir, 'd.vmdk');
  await qemuImg('create', '-f', 'vmdk', vmdk, '1M');
  assert.match(diskpipe(['resize', vmdk, '2M']).stderr, /resizing vmdk images is not supported/);
  const info = JSON.parse(await qemuImg('info', '--output=json', q));
  assert.equal(info['virtual-size'], 2 ** 20);
});

test('resize refuses to grow an overlay over a larger backing file (its data would show)', async () => {
  const base = join(dir, 'big-base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '4M');
  await qemuIo(base, ['write -P 9 0 4M']);
  const top = join(dir, 'small-top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'big-base.qcow2', '-F', 'qcow2', top, '2M');
  const r = diskpipe(['resize', top, '4M']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /backing file \(4194304 bytes\) is larger than the image/);
  assert.equal(JSON.parse(await qemuImg('info', '--output=json', top))['virtual-size'], 2 ** 21);
  // A backing file no larger than the image is fine.
  const same = join(dir, 'same-top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'big-base.qcow2', '-F', 'qcow2', same);
  assert.equal(diskpipe(['resize', same, '8M']).status, 0);
  await qemuImg('check', same);
});

test('resize --shrink frees qcow2 clusters past the new end, as qemu-img resize --shrink', async () => {
  const cases: Array<[string, string]> = [
    ['cluster_size=512', '100k'],
    ['cluster_size=64k', '300k'],
    ['cluster_size=512,refcount_bits=1', '1M'],
    ['cluster_size=16k,extended_l2=on', '512'],
    ['cluster_size=512', '1536'],
  ];
  for (const [opts, size] of cases) {
    const ours = join(dir, 'shrink.qcow2');
    const theirs = join(dir, 'shrink-qemu.qcow2');
    await qemuImg('create', '-f', 'qcow2', '-o', opts, ours, '4M');
    await qemuIo(ours, [
      'write -P 1 0 1M',
      'write -c -P 2 1M 64k',
      'write -z 2M 512k',
      'write -P 3 3M 1M',
    ]);
    copyFileSync(ours, theirs);
    const r = diskpipe(['resize', '--shrink', ours, size]);
    assert.equal(r.status, 0, r.stderr);
    await qemuImg('resize', '--shrink', theirs, size);
    await qemuImg('check', ours);
    assert.equal((await qemuImg('compare', ours, theirs)).trim(), 'Images are identical.');
    // The unused tail of the file is cut as qemu cuts it.
    assert.equal(statSync(ours).size, statSync(theirs).size, opts);
    // Growing both again gives the same content, and qemu can still write.
    assert.equal(diskpipe(['resize', ours, '4M']).status, 0);
    await qemuImg('resize', theirs, '4M');
    assert.equal((await qemuImg('compare', ours, theirs)).trim(), 'Images are identical.');
    await qemuIo(ours, ['write -P 4 2M 64k']);
    await qemuImg('check', ours);
  }
});

test('resize --shrink refuses qcow2 images with internal snapshots, unchanged', async () => {
  const q = join(dir, 'snap-shrink.qcow2');
  await qemuImg('create', '-f', 'qcow2', q, '4M');
  await qemuIo(q, ['write -P 1 0 4M']);
  await qemuImg('snapshot', '-c', 's', q);
  const r = diskpipe(['resize', '--shrink', q, '1M']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /internal snapshots is not implemented/);
  assert.equal(JSON.parse(await qemuImg('info', '--output=json', q))['virtual-size'], 4 * 2 ** 20);
  await qemuImg('check', q);
});

test('resize refuses a qcow2 whose L1 table lies on a refcount block, unchanged (as qemu-img)', async () => {
  const path = join(dir, 'l1-on-refblock.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '100M');
  await qemuIo(path, ['write -P 1 0 1M']);
  // A crafted header: the L1 table offset (bytes 40-47) names the first refcount block.
  const bytes = readFileSync(path);
  const refTable = Number(bytes.readBigUInt64BE(48));
  const block = bytes.readBigUInt64BE(refTable);
  bytes.writeBigUInt64BE(block, 40);
  writeFileSync(path, bytes);
  const copy = join(dir, 'l1-on-refblock-qemu.qcow2');
  for (const [args, size] of [
    [[], '3G'], // new L1 entries in the table's own cluster: they were zeroed over refcounts
    [['--shrink'], '1M'],
  ] as const) {
    const r = diskpipe(['resize', ...args, path, size]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^diskpipe: .*the L1 table \(at \d+\) overlaps the refcount block 0;/);
    assert.deepEqual(readFileSync(path), bytes);
    copyFileSync(path, copy);
    const q = spawnSync('qemu-img', ['resize', ...args, copy, size], { encoding: 'utf8' });
    assert.equal(q.status, 1, `qemu-img resize ${args.join(' ')} ${size}: ${q.stderr}`);
  }
});

test('resize and rebase name a URL or stdin as what it is, not a missing file', () => {
  for (const image of ['nbd://127.0.0.1:1/', 'http://127.0.0.1:1/x.qcow2', '-']) {
    for (const args of [
      ['resize', image, '1G'],
      ['rebase', '-u', '-b', '', image],
      ['rebase', '-b', '', image],
    ]) {
      // Before: 'cannot open nbd://127.0.0.1:1/: ENOENT: no such file or directory'.
      const r = diskpipe(args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /^diskpipe: (resize|rebase) edits an image file in place; .*\n$/);
    }
  }
});
