/** convert -O vdi and create -f vdi, checked against qemu-img (see writer-checks.ts). */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe } from '../helpers/peers.js';
import { checkConversion, checkCreate, makeSources } from './writer-checks.js';

const setup = makeSources();

test('convert -O vdi: qemu-made sources pass check/compare, as sparse as qemu-img', async () => {
  const { dir, sources } = await setup;
  for (const src of sources) await checkConversion(dir, src, { format: 'vdi', check: true });
});

test('create -f vdi: an empty image of SIZE, as qemu-img makes it', async () => {
  const { dir } = await setup;
  for (const size of ['0', '1M', '1000000', '3G']) {
    await checkCreate(dir, { format: 'vdi', check: true }, size);
  }
});

test('vdi takes no -o option; -n into a vdi is refused', async () => {
  const { dir, sources } = await setup;
  const r = diskpipe(['create', '-f', 'vdi', '-o', 'static=on', join(dir, 'x.vdi'), '1M']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: the vdi format does not take the option 'static'\n$/);
  const n = diskpipe(['convert', '-n', '-O', 'vdi', sources[0]!.path, join(dir, 'y.vdi')]);
  assert.equal(n.status, 2);
  assert.match(n.stderr, /-n writes into raw or qcow2 images only/);
});
