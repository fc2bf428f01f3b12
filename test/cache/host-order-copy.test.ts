import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CopyPassHash } from '../../src/cache/copy-pass-hash.js';
import { copyInHostOrder, hasMapping } from '../../src/cache/host-order-copy.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-hostorder-');

test('host-order copy: compressed clusters are read many per request, not one per read', async () => {
  // 24 MiB of text in three runs of a 64 MiB disk: every cluster compresses (one map entry each).
  const raw = join(dir, 'disk.raw');
  await qemuImg('create', '-f', 'raw', raw, '64M');
  const text = join(dir, 'text');
  writeFileSync(text, randomBytes(6 * MiB).toString('base64'));
  for (const at of ['1M', '20M', '50M']) await qemuIo(raw, [`write -s ${text} ${at} 8M`], 'raw');
  const qcow2 = join(dir, 'disk.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', raw, qcow2);
  const image = await openImage(qcow2);
  const out = join(dir, 'out.raw');
  const file = await LocalFile.open(out, 'w+');
  let reads = 0;
  const read = image.read.bind(image);
  image.read = (buf, offset) => {
    reads++;
    return read(buf, offset);
  };
  const hash = new CopyPassHash(image.size);
  try {
    await file.truncate(image.size);
    assert.ok(hasMapping(image));
    await copyInHostOrder(image, file, hash);
  } finally {
    await file.close();
    await image.close();
  }
  // 384 clusters of 64 KiB: 2 MiB requests need 12 reads (a few more where runs are cut).
  assert.ok(reads <= 16, `${reads} reads for 24 MiB`);
  assert.match(await qemuImg('compare', raw, out), /identical/);
  assert.equal(await hash.digest(), diskpipe(['checksum', raw]).stdout.split(' ')[0]);
});
