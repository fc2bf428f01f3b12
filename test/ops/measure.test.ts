import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

/** diskpipe measure --json must print what qemu-img measure --output=json prints. */
async function sameAsQemu(args: string[]): Promise<void> {
  const r = diskpipe(['measure', '--json', ...args]);
  const peer = spawnSync('qemu-img', ['measure', '--output=json', ...args], { encoding: 'utf8' });
  if (peer.status !== 0) {
    // Both refuse sizes whose L1 table would pass qemu's 32 MiB limit.
    assert.match(peer.stderr, /too large/);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /too large for qcow2/);
    return;
  }
  const expected = JSON.parse(peer.stdout);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), expected, args.join(' '));
}

const OUTPUTS: string[][] = [
  ['-O', 'raw'],
  ['-O', 'qcow2'],
  ['-O', 'qcow2', '-o', 'cluster_size=512'],
  ['-O', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=1'],
  ['-O', 'qcow2', '-o', 'cluster_size=2M,refcount_bits=64'],
  ['-O', 'qcow2', '-o', 'cluster_size=32k,extended_l2=on'],
  ['-O', 'qcow2', '-o', 'compat=0.10'],
];

test('measure equals qemu-img measure on a sparse raw file with unaligned data runs', async () => {
  const raw = sparseFile(join(dir, 'sparse.img'), 10 * 2 ** 20 + 1000);
  const fd = openSync(raw, 'r+');
  for (const at of [0, 8192, 3 * 65536 + 4096, 5 * 2 ** 20 - 4096, 10 * 2 ** 20]) {
    writeSync(fd, Buffer.alloc(1000, 0xab), 0, 1000, at);
  }
  closeSync(fd);
  for (const out of OUTPUTS) await sameAsQemu([...out, '-f', 'raw', raw]);
});

test('measure equals qemu-img measure on qcow2 images with data, zeroes and compression', async () => {
  const q = join(dir, 'data.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=16k', q, '64M');
  await qemuIo(q, [
    'write -P 1 0 100k',
    'write -z 200k 300k',
    'write -c -P 2 1M 64k',
    'write -P 3 33M 4k',
    'write -P 4 67108352 512',
  ]);
  for (const out of OUTPUTS) await sameAsQemu([...out, q]);
  const v2 = join(dir, 'v2.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'compat=0.10', v2, '8M');
  await qemuIo(v2, ['write -P 5 1M 1M']);
  for (const out of OUTPUTS.slice(0, 3)) await sameAsQemu([...out, v2]);
});

test('measure reads through a backing chain and counts persistent bitmaps', async () => {
  const base = join(dir, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '16M');
  await qemuIo(base, ['write -P 6 0 2M']);
  const top = join(dir, 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 7 8M 1M']);
  await qemuImg('bitmap', '--add', top, 'b0');
  await qemuImg('bitmap', '--add', '-g', '4k', top, 'a-longer-bitmap-name');
  for (const out of OUTPUTS.slice(0, 3)) await sameAsQemu([...out, top]);
});

test('measure --size equals qemu-img measure --size', async () => {
  for (const size of ['1000', '1G', '100T']) {
    for (const out of OUTPUTS) await sameAsQemu([...out, '--size', size]);
  }
});

test('measure prints the human form of qemu-img measure', async () => {
  const q = join(dir, 'human.qcow2');
  await qemuImg('create', '-f', 'qcow2', q, '10M');
  await qemuIo(q, ['write 0 1M']);
  const r = diskpipe(['measure', '-O', 'qcow2', q]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, await qemuImg('measure', '-O', 'qcow2', q));
  assert.equal(
    diskpipe(['measure', '--size', '1G']).stdout,
    await qemuImg('measure', '--size', '1G'),
  );
});

test('measure refuses bad arguments with a usage error', () => {
  const cases: Array<[string[], RegExp]> = [
    [['measure'], /either --size SIZE or IMAGE/],
    [['measure', '--size', '1G', 'x.img'], /cannot be used together/],
    [['measure', '-O', 'vmdk', '--size', '1G'], /cannot measure for 'vmdk'/],
    [['measure', '-O', 'qcow2', '-o', 'cluster_size=3k', '--size', '1G'], /power of two/],
    [['measure', '-O', 'qcow2', '-o', 'preallocation=full', '--size', '1G'], /unknown option/],
    [['measure', '-o', 'cluster_size=64k', '--size', '1G'], /raw images take no option/],
  ];
  for (const [args, message] of cases) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message);
  }
});
