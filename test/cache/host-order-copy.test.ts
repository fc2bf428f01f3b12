import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CopyPassHash } from '../../src/cache/copy-pass-hash.js';
import { copyInHostOrder, hasMapping } from '../../src/cache/host-order-copy.js';
import type { Image } from '../../src/image/types.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-hostorder-');

/** Copies a mapped image to a new file at `out` in host order, feeding `hash`; closes both. */
async function copyToFile(image: Image, out: string, hash: CopyPassHash): Promise<void> {
  const file = await LocalFile.open(out, 'w+');
  try {
    await file.truncate(image.size);
    assert.ok(hasMapping(image));
    await copyInHostOrder(image, file, hash);
  } finally {
    await file.close();
    await image.close();
  }
}

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
  let reads = 0;
  const read = image.read.bind(image);
  image.read = (buf, offset) => {
    reads++;
    return read(buf, offset);
  };
  const hash = new CopyPassHash(image.size);
  await copyToFile(image, out, hash);
  // 384 clusters of 64 KiB: 2 MiB requests need 12 reads (a few more where runs are cut).
  assert.ok(reads <= 16, `${reads} reads for 24 MiB`);
  assert.match(await qemuImg('compare', raw, out), /identical/);
  assert.equal(await hash.digest(), diskpipe(['checksum', raw]).stdout.split(' ')[0]);
});

test('host-order copy: the hash reads whole blocks in place; only blocks cut by a piece are copied', async () => {
  // 4 KiB clusters with data runs that start and end inside 64 KiB hash blocks.
  const qcow2 = join(dir, 'cut.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', qcow2, '48M');
  await qemuIo(qcow2, [
    'write -P 0x11 4096 5M',
    'write -P 0x22 12292k 4M',
    'write -z 13M 64k',
    'write -P 0x33 40956k 3M',
  ]);
  const image = await openImage(qcow2);
  const out = join(dir, 'cut.raw');
  const hash = new CopyPassHash(image.size);
  let copied = 0;
  let shared = 0;
  const data = hash.data.bind(hash);
  hash.data = (buf, offset) => {
    copied += buf.length;
    data(buf, offset);
  };
  const dataShared = hash.dataShared.bind(hash);
  hash.dataShared = (buf, offset) => {
    shared += buf.length;
    return dataShared(buf, offset);
  };
  await copyToFile(image, out, hash);
  assert.equal(shared, 12 * MiB - 65536, 'every data byte is offered in place');
  // Copied: the cut blocks at both ends of each 2 MiB piece (at most 2 × 64 KiB each).
  assert.ok(copied <= 8 * 2 * 65536, `${copied} bytes copied by the calling thread`);
  assert.match(await qemuImg('compare', qcow2, out), /identical/);
  assert.equal(await hash.digest(), diskpipe(['checksum', qcow2]).stdout.split(' ')[0]);
});

test('host-order copy: the map is walked once per window (its zero flags give the extents)', async () => {
  // Data, a zeroed cluster, preallocated zeroes and compressed text: every kind of map entry.
  const qcow2 = join(dir, 'walks.qcow2');
  await qemuImg('create', '-f', 'qcow2', qcow2, '300M');
  await qemuIo(qcow2, [
    'write -P 0x41 0 3M',
    'write -z 3M 64k',
    'write -P 0x42 200M 1M',
    'write -z -u 10M 1M',
    'write -P 0x43 280M 64k',
  ]);
  const image = await openImage(qcow2);
  let extentWalks = 0;
  let mapWalks = 0;
  const extents = image.extents.bind(image);
  image.extents = (offset, length) => {
    extentWalks++;
    return extents(offset, length);
  };
  assert.ok(hasMapping(image));
  const mapping = image.mapping.bind(image);
  image.mapping = (offset, length) => {
    mapWalks++;
    return mapping(offset, length);
  };
  const out = join(dir, 'walks.raw');
  const hash = new CopyPassHash(image.size);
  await copyToFile(image, out, hash);
  // 300 MiB: two 256 MiB windows, one map walk each.
  assert.equal(extentWalks, 0, 'extents walked besides the map');
  assert.equal(mapWalks, 2);
  assert.match(await qemuImg('compare', qcow2, out), /identical/);
  assert.equal(await hash.digest(), diskpipe(['checksum', qcow2]).stdout.split(' ')[0]);
});

test('host-order copy: data is written on the calling thread, not one thread-pool trip per 256 KiB', async () => {
  const qcow2 = join(dir, 'blocking.qcow2');
  await qemuImg('create', '-f', 'qcow2', qcow2, '16M');
  await qemuIo(qcow2, ['write -P 0x51 0 3M', 'write -P 0x52 8M 1M']);
  const image = await openImage(qcow2);
  assert.ok(hasMapping(image));
  const out = join(dir, 'blocking.raw');
  const file = await LocalFile.open(out, 'w+');
  const calls = { write: 0, writeBlocking: 0 };
  const write = file.write.bind(file);
  file.write = (buf, offset) => {
    calls.write++;
    return write(buf, offset);
  };
  const writeBlocking = file.writeBlocking.bind(file);
  file.writeBlocking = (buf, offset) => {
    calls.writeBlocking++;
    return writeBlocking(buf, offset);
  };
  const hash = new CopyPassHash(image.size);
  try {
    await file.truncate(image.size);
    await copyInHostOrder(image, file, hash);
  } finally {
    await file.close();
    await image.close();
  }
  assert.equal(calls.write, 0);
  assert.ok(calls.writeBlocking >= 2, `${calls.writeBlocking} blocking writes`);
  assert.match(await qemuImg('compare', qcow2, out), /identical/);
  assert.equal(await hash.digest(), diskpipe(['checksum', qcow2]).stdout.split(' ')[0]);
});
