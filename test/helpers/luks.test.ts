/** The LUKS1 images the tests write by hand are real ones: qemu unlocks them with the passphrase. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeLuks1 } from './luks.js';
import { run, tempDir } from './peers.js';

const dir = tempDir('diskpipe-luks-');

function qemuIoLuks(path: string, passphrase: string, commands: string[]): Promise<string> {
  return run('qemu-io', [
    '--object',
    `secret,id=s0,data=${passphrase}`,
    '--image-opts',
    `driver=luks,key-secret=s0,file.filename=${path}`,
    ...commands.flatMap((c) => ['-c', c]),
  ]);
}

test('writeLuks1: qemu opens the image with the passphrase and refuses another', async () => {
  const path = writeLuks1(join(dir, 'disk.luks'), 1024 * 1024);
  const out = await qemuIoLuks(path, 'diskpipe', ['write -P 0x5a 4k 8k', 'read -P 0x5a 4k 8k']);
  assert.match(out, /read 8192\/8192 bytes at offset 4096/);
  assert.match(await run('qemu-img', ['info', path]), /file format: luks/);
  await assert.rejects(qemuIoLuks(path, 'wrong', ['read 0 4k']), /Invalid password/);
});
