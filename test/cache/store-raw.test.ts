import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { storeImage } from '../../src/cache/store-raw.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-store-raw-');

test('storeImage (a local pull): data is written on the calling thread, not one thread-pool trip per 256 KiB', async () => {
  const qcow2 = join(dir, 'disk.qcow2');
  await qemuImg('create', '-f', 'qcow2', qcow2, '16M');
  await qemuIo(qcow2, ['write -P 0x61 0 3M', 'write -P 0x62 8M 1M']);
  const image = await openImage(qcow2);
  const calls = { write: 0, writeBlocking: 0 };
  const proto = LocalFile.prototype;
  const { write, writeBlocking } = proto;
  proto.write = function (buf, offset) {
    calls.write++;
    return write.call(this, buf, offset);
  };
  proto.writeBlocking = function (buf, offset) {
    calls.writeBlocking++;
    return writeBlocking.call(this, buf, offset);
  };
  const out = join(dir, 'out.raw');
  let digest: string;
  try {
    ({ contentDigest: digest } = await storeImage(image, out));
  } finally {
    proto.write = write;
    proto.writeBlocking = writeBlocking;
    await image.close();
  }
  assert.equal(calls.write, 0);
  assert.ok(calls.writeBlocking >= 2, `${calls.writeBlocking} blocking writes`);
  assert.match(await qemuImg('compare', qcow2, out), /identical/);
  assert.equal(digest, diskpipe(['checksum', qcow2]).stdout.split(' ')[0]);
});
