/**
 * L1 tables are read lazily, in pieces, through one bounded cache: a 65-layer chain of
 * 128 GiB images with 512-byte clusters (a 32 MiB L1 table each, 2 GiB in all) is opened and
 * read with at most L1_CACHE_BYTES of L1 pieces held. Memory is counted in bytes loaded into
 * the cache, not measured as RSS.
 */
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { L1_CACHE_BYTES, L1_PIECE_BYTES, l1Stats } from '../../src/formats/qcow2/l1-table.js';
import { l2CacheBytesAt } from '../../src/formats/qcow2/mapping.js';
import { MAX_CHAIN_DEPTH, openImage } from '../../src/open.js';
import { qemuImg, run, tempDir } from '../helpers/peers.js';

const root = tempDir();
const GiB = 2 ** 30;
const LAYERS = MAX_CHAIN_DEPTH + 1;

// One overlay made by qemu-img; every layer is a sparse copy of it in its own directory,
// whose `b` links to the layer below, so every layer's backing file is `b/img.qcow2`.
const template = join(root, 'template.qcow2');
await qemuImg(
  'create',
  '-q',
  '-f',
  'qcow2',
  '-o',
  'cluster_size=512',
  '-u',
  '-b',
  'b/img.qcow2',
  '-F',
  'qcow2',
  template,
  '128G',
);
for (let k = 0; k < LAYERS; k++) {
  const d = join(root, `d${k}`);
  mkdirSync(d);
  await run('cp', ['--sparse=always', template, join(d, 'img.qcow2')]);
  if (k > 0) symlinkSync(join(root, `d${k - 1}`), join(d, 'b'));
}
await qemuImg('rebase', '-u', '-b', '', join(root, 'd0', 'img.qcow2'));

test(`qcow2 L1: a ${LAYERS}-layer chain of 128 GiB / 512 B-cluster images holds at most ${L1_CACHE_BYTES} bytes of L1`, async () => {
  const top = join(root, `d${LAYERS - 1}`, 'img.qcow2');
  const before = l1Stats.loadedBytes;
  l1Stats.peakResidentBytes = l1Stats.residentBytes;
  const image = await openImage(top, { allowBacking: [root] });
  try {
    assert.equal(image.size, 128 * GiB);
    const buf = new Uint8Array(512);
    // Spread over the whole disk: every read walks a different L1 piece of every layer.
    for (let i = 0; i < 64; i++) {
      await image.read(buf, Math.floor((i * 128 * GiB) / 64) + 4096);
      assert.ok(buf.every((b) => b === 0));
    }
  } finally {
    await image.close();
  }
  const loaded = l1Stats.loadedBytes - before;
  // Whole tables would be 32 MiB per layer; pieces are all that is read...
  assert.ok(loaded <= LAYERS * 65 * L1_PIECE_BYTES, `${loaded} bytes of L1 loaded`);
  assert.ok(loaded > L1_CACHE_BYTES, 'the reads went through more L1 than the cache holds');
  // ...and never more than the shared budget is held at once.
  assert.ok(
    l1Stats.peakResidentBytes <= L1_CACHE_BYTES,
    `peak ${l1Stats.peakResidentBytes} bytes of L1 held`,
  );
  assert.equal(l1Stats.residentBytes, 0, 'closing the chain releases its pieces');
});

test('qcow2 L2: the L2 cache budgets of the longest chain stay within the RSS budget', () => {
  let total = 0;
  for (let depth = 0; depth < LAYERS; depth++) total += l2CacheBytesAt(depth);
  assert.ok(total <= 128 * 2 ** 20, `${total} bytes of L2 cache for ${LAYERS} layers`);
});
