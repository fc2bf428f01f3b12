import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { writeLuks1 } from '../helpers/luks.js';
import { qemuImg, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-refused-');

async function refusedAs(path: string, name: string): Promise<void> {
  await assert.rejects(openImage(path), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNSUPPORTED');
    assert.match(err.message, new RegExp(`${name} images are not supported`));
    return true;
  });
}

test('refused: formats qemu-img creates are recognised, never read as raw', async () => {
  for (const fmt of ['parallels']) {
    const path = join(dir, `img.${fmt}`);
    await qemuImg('create', '-f', fmt, path, '4M');
    await refusedAs(path, fmt);
  }
  const luks = writeLuks1(join(dir, 'img.luks'), 4 * 1024 * 1024);
  await refusedAs(luks, 'luks');
});

test('refused: formats recognised by their magic', async () => {
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
