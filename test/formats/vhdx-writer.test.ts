/** convert -O vhdx and create -f vhdx (dynamic), checked against qemu-img (writer-checks.ts). */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { qemuImg } from '../helpers/peers.js';
import { checkConversion, checkCreate, makeSources, ok } from './writer-checks.js';

const setup = makeSources();

test('convert -O vhdx: check, compare, sparseness, read back', async () => {
  const { dir, sources } = await setup;
  for (const src of sources) await checkConversion(dir, src, { format: 'vhdx', check: true });
});

test('create -f vhdx: empty images with qemu-img default block sizes', async () => {
  const { dir } = await setup;
  for (const size of ['0', '1M', '1000000', '1G', '2G', '101G']) {
    await checkCreate(dir, { format: 'vhdx', check: true }, size);
    const ours = join(dir, `empty-${size}-vhdx-default.vhdx`);
    const theirs = join(dir, `empty-${size}-vhdx-default.qemu.vhdx`);
    const block = async (p: string) =>
      JSON.parse(await qemuImg('info', '--output=json', p))['cluster-size'];
    assert.equal(await block(ours), await block(theirs), `${size}: block size`);
  }
});

test('convert -O vhdx -o block_size=1M: smaller blocks, still as qemu-img reads them', async () => {
  const { dir, sources } = await setup;
  await checkConversion(dir, sources[0]!, {
    format: 'vhdx',
    options: 'block_size=1M',
    check: true,
  });
  const out = join(dir, 'scattered-raw-vhdx-block_size-1M.vhdx');
  const info = JSON.parse(await qemuImg('info', '--output=json', out));
  assert.equal(info['cluster-size'], 1024 * 1024);
  ok(['info', out]);
});
