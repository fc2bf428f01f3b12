/**
 * convert -O vpc (dynamic, fixed, force_size) and create -f vpc, checked against qemu-img
 * (writer-checks.ts; qemu has no check for vpc). Sizes follow qemu-img: rounded up to the CHS
 * geometry unless force_size=on.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vhdSize } from '../../src/formats/vhd/geometry.js';
import { diskpipe, qemuImg, sparseFile } from '../helpers/peers.js';
import { checkConversion, checkCreate, checksumOf, makeSources, ok } from './writer-checks.js';

const setup = makeSources();
const MiB = 1024 * 1024;

test('convert -O vpc (dynamic): compare, sparseness, qemu-img virtual size', async () => {
  const { dir, sources } = await setup;
  for (const src of sources) await checkConversion(dir, src, { format: 'vpc', check: false });
});

test('convert -O vpc -o subformat=fixed (with and without force_size)', async () => {
  const { dir, sources } = await setup;
  for (const options of ['subformat=fixed', 'subformat=fixed,force_size=on']) {
    for (const src of sources) {
      await checkConversion(dir, src, { format: 'vpc', options, check: false, readAs: 'vpc' });
    }
  }
});

test('convert -O vpc -o force_size=on (dynamic): the exact size', async () => {
  const { dir, sources } = await setup;
  await checkConversion(dir, sources[1]!, {
    format: 'vpc',
    options: 'force_size=on',
    check: false,
  });
});

test('Azure recipe: a 1 MiB-multiple raw becomes a fixed VHD of exactly that size + footer', async () => {
  const { dir } = await setup;
  const src = sparseFile(join(dir, 'azure.raw'), 30 * MiB);
  const out = join(dir, 'azure.vhd');
  ok(['convert', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', src, out]);
  const f = readFileSync(out);
  assert.equal(f.length, 30 * MiB + 512);
  const footer = f.subarray(f.length - 512);
  assert.equal(footer.toString('latin1', 0, 8), 'conectix');
  assert.equal(footer.readUInt32BE(60), 2, 'fixed disk');
  assert.equal(footer.readBigUInt64BE(48), BigInt(30 * MiB), 'current size');
  const info = JSON.parse(await qemuImg('info', '--output=json', '-f', 'vpc', out));
  assert.equal(info['virtual-size'], 30 * MiB);
  // Named .vhd, it is probed as a fixed VHD (no -f): the footer is not guest data.
  const ours = JSON.parse(ok(['info', '--json', out]));
  assert.equal(ours.format, 'vpc');
  assert.equal(ours['virtual-size'], 30 * MiB);
  assert.equal(checksumOf(out), checksumOf(src));
});

test('create -f vpc: geometry rounding equals qemu-img for many sizes', async () => {
  const { dir } = await setup;
  // Small, odd, each sectors-per-track band (17, 31, 63, 255), past the largest geometry.
  for (const size of ['1M', '1000000', '100M', '1G', '20G', '40G', '127G', '200G']) {
    await checkCreate(dir, { format: 'vpc', check: false }, size);
    await checkCreate(dir, { format: 'vpc', options: 'force_size=on', check: false }, size);
  }
  await checkCreate(
    dir,
    { format: 'vpc', options: 'subformat=fixed', check: false, readAs: 'vpc' },
    '1000000',
  );
});

test('vhdSize: rounding up, never down, and the 2040 GiB limit', () => {
  for (const bytes of [512, 1000 * 512, 3 * MiB + 7, 33 * 1024 * MiB]) {
    const { size } = vhdSize(bytes, false);
    assert.ok(size >= bytes, `${bytes} -> ${size}`);
    assert.equal(vhdSize(bytes, true).size, Math.ceil(bytes / 512) * 512);
  }
  assert.throws(() => vhdSize(2041 * 1024 * MiB, false), /2040 GiB/);
});

test('vpc: a bad force_size value or an unknown key is a usage error', async () => {
  const { dir, sources } = await setup;
  const bad = diskpipe([
    'convert',
    '-O',
    'vpc',
    '-o',
    'force_size=maybe',
    sources[0]!.path,
    join(dir, 'b.vhd'),
  ]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^diskpipe: -o force_size=maybe: expected on or off\n$/);
  const key = diskpipe([
    'create',
    '-f',
    'vpc',
    '-o',
    'preallocation=full',
    join(dir, 'c.vhd'),
    '1M',
  ]);
  assert.equal(key.status, 2);
  assert.match(
    key.stderr,
    /the vpc format does not take the option 'preallocation' \(it takes: subformat, force_size\)/,
  );
});
