import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-trailer-');

/** A file of `size` bytes whose last 512 bytes are `tail`. */
function withTail(path: string, size: number, tail: Buffer): string {
  writeFileSync(path, Buffer.alloc(size - 512, 0x11));
  const fd = openSync(path, 'a');
  writeSync(fd, tail);
  closeSync(fd);
  return path;
}

function koly(): Buffer {
  const t = Buffer.alloc(512);
  t.write('koly', 0, 'latin1');
  t.writeUInt32BE(4, 4); // version
  t.writeUInt32BE(512, 8); // header size
  return t;
}

test('an Apple DMG (koly trailer) is refused by name, never read as raw', async () => {
  const dmg = withTail(join(dir, 'installer.dmg'), 19 * 1024, koly());
  await assert.rejects(openImage(dmg), /dmg images are not supported/);
  const r = diskpipe(['info', dmg]);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `diskpipe: ${dmg}: dmg images are not supported (-f raw reads the bytes as they are)\n`,
  );
  // The hint works: a raw disk whose last sector happens to look like a trailer is readable.
  assert.equal(diskpipe(['checksum', '-f', 'raw', dmg]).status, 0);
  // -f raw still reads any file as is; 'koly' text without the header fields stays raw.
  const raw = await openImage(dmg, { format: 'raw' });
  assert.equal(raw.size, 19 * 1024);
  await raw.close();
  const text = withTail(join(dir, 'notes.img'), 4096, Buffer.alloc(512, 'koly'));
  const image = await openImage(text);
  assert.equal(image.format, 'raw');
  await image.close();
});

test('a fixed VHD named .vhd/.vpc is probed as vpc; elsewhere info suggests -f vpc', async () => {
  const vhd = join(dir, 'fixed.vhd');
  await qemuImg('create', '-f', 'vpc', '-o', 'subformat=fixed,force_size=on', vhd, '4M');
  await qemuIo(vhd, ['write -P 0x42 0 1M', 'write -P 0x43 3M 512'], 'vpc');
  const image = await openImage(vhd);
  assert.equal(image.format, 'vpc');
  assert.equal(image.size, 4 * 2 ** 20);
  await image.close();
  // The guest bytes are those qemu sees through -f vpc (the footer is not guest data).
  const ref = join(dir, 'fixed-ref.raw');
  await qemuImg('convert', '-f', 'vpc', '-O', 'raw', vhd, ref);
  const ours = diskpipe(['checksum', vhd]).stdout.split(' ')[0];
  assert.equal(ours, diskpipe(['checksum', ref]).stdout.split(' ')[0]);
  const vpc = join(dir, 'FIXED.VPC');
  copyFileSync(vhd, vpc);
  assert.match(diskpipe(['info', vpc]).stdout, /file format: vpc/);

  // Any other name: raw (the last sector is the guest's), with a hint on stderr.
  const img = join(dir, 'fixed.img');
  copyFileSync(vhd, img);
  const info = diskpipe(['info', img]);
  assert.equal(info.status, 0);
  assert.match(info.stdout, /file format: raw/);
  assert.equal(info.stderr, `diskpipe: note: ${img} looks like a fixed VHD; use -f vpc\n`);
  assert.match(diskpipe(['info', '-f', 'vpc', img]).stdout, /file format: vpc/);
  assert.equal(diskpipe(['info', '-f', 'raw', img]).stderr, '');
});

test('a .vhd whose footer is not a consistent fixed-disk footer stays raw', async () => {
  const vhd = join(dir, 'good.vhd');
  await qemuImg('create', '-f', 'vpc', '-o', 'subformat=fixed,force_size=on', vhd, '1M');
  const bytes = readFileSync(vhd);
  const badSum = join(dir, 'bad-checksum.vhd');
  const copy = Buffer.from(bytes);
  copy.writeUInt8(copy.readUInt8(copy.length - 448) ^ 0xff, copy.length - 448); // checksum
  writeFileSync(badSum, copy);
  const longer = join(dir, 'size-mismatch.vhd');
  writeFileSync(longer, Buffer.concat([Buffer.alloc(512), bytes])); // a sector more than the footer says
  for (const path of [badSum, longer]) {
    const image = await openImage(path);
    assert.equal(image.format, 'raw', path);
    await image.close();
  }
});
