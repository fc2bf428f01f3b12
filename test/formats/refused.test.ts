import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { qemuImg, run, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-refused-');
const T = { timeout: 10_000 };

async function refusedAs(path: string, name: string): Promise<void> {
  await assert.rejects(openImage(path), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNSUPPORTED');
    assert.match(err.message, new RegExp(`${name} images are not supported`));
    return true;
  });
}

test('refused: formats qemu-img creates are recognised, never read as raw', T, async () => {
  for (const fmt of ['parallels']) {
    const path = join(dir, `img.${fmt}`);
    await qemuImg('create', '-f', fmt, path, '4M');
    await refusedAs(path, fmt);
  }
  const luks = join(dir, 'img.luks');
  try {
    await run('qemu-img', [
      'create',
      '--object',
      'secret,id=sec0,data=diskpipe',
      '-f',
      'luks',
      '-o',
      'key-secret=sec0,iter-time=10',
      luks,
      '4M',
    ]);
  } catch (err) {
    // qemu's LUKS key setup times itself and fails on a loaded machine ("Unable to get
    // accurate CPU usage"); then a header with LUKS magic and version 1 is what we probe.
    if (!/accurate CPU usage/.test(String(err))) throw err;
    const header = Buffer.alloc(4096);
    header.set([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0x00, 0x01]);
    writeFileSync(luks, header);
  }
  await refusedAs(luks, 'luks');
});

test('refused: formats recognised by their magic', T, async () => {
  const cases: [string, Buffer][] = [
    ['parallels', Buffer.from('WithouFreSpacExt')],
    ['bochs', Buffer.from('Bochs Virtual HD Image\0')],
    ['cloop', Buffer.from('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0\n')],
  ];
  for (const [name, head] of cases) {
    const path = join(dir, `magic-${name}`);
    writeFileSync(path, Buffer.concat([head, Buffer.alloc(4096 - head.length)]));
    await refusedAs(path, name);
  }
  // Text that merely mentions a magic later on is still raw.
  const plain = join(dir, 'plain.txt');
  writeFileSync(plain, 'hello WithoutFreeSpace\n');
  const image = await openImage(plain);
  assert.equal(image.format, 'raw');
  await image.close();
});
