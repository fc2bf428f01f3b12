/**
 * Every image writer ends the same way (FileWriter): close() completes the image once, later
 * close()/discard() calls do nothing, reading is refused with the format's name, and a
 * discarded writer leaves the file closed. Each completed image is checked by qemu-img.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { NotCapableError } from '../../src/errors.js';
import { Qcow2Writer } from '../../src/formats/qcow2/writer/index.js';
import { createWriter, type ImageWriter, type WriterFormat } from '../../src/formats/writers.js';
import { LocalFile } from '../../src/io/file.js';
import { qemuImg, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;

const MAKERS: Record<string, (file: LocalFile, path: string) => Promise<ImageWriter>> = {
  qcow2: (file) => Qcow2Writer.create(file, { size: 4 * MiB }),
  ...Object.fromEntries(
    (['vmdk', 'vhdx', 'vpc', 'vdi'] as WriterFormat[]).map((f) => [
      f,
      (file: LocalFile, path: string) =>
        createWriter(f, file, { size: 4 * MiB, path, options: {}, sync: true }),
    ]),
  ),
  'vmdk streamOptimized': (file, path) =>
    createWriter('vmdk', file, {
      size: 4 * MiB,
      path,
      options: { subformat: 'streamOptimized' },
    }),
};

for (const [name, make] of Object.entries(MAKERS)) {
  test(`${name} writer: close completes once, then close/discard do nothing`, async () => {
    const path = join(dir, `${name.replace(' ', '-')}.img`);
    const w = await make(await LocalFile.open(path, 'w+'), path);
    const data = new Uint8Array(64 * 1024).fill(7);
    await w.write!(data, 0);
    await assert.rejects(w.read(new Uint8Array(512), 0), (err: Error) => {
      assert.ok(err instanceof NotCapableError);
      assert.match(err.message, new RegExp(`the ${w.format} writer cannot read`));
      return true;
    });
    await w.close();
    await w.close();
    await w.discard();
    const format = w.format;
    if (format !== 'vpc') await qemuImg('check', '-f', format, path); // qemu cannot check vpc
    const out = join(dir, `${name.replace(' ', '-')}.raw`);
    await qemuImg('convert', '-f', format, '-O', 'raw', path, out);
    const back = await LocalFile.open(out, 'r');
    try {
      const head = new Uint8Array(data.length);
      await back.read(head, 0);
      assert.deepEqual(head, data);
    } finally {
      await back.close();
    }
  });

  test(`${name} writer: discard closes the file without completing it; close then does nothing`, async () => {
    const path = join(dir, `${name.replace(' ', '-')}-discarded.img`);
    const file = await LocalFile.open(path, 'w+');
    const w = await make(file, path);
    await w.write!(new Uint8Array(4096).fill(1), 0);
    await w.discard();
    await w.close(); // no tables written into a closed file, no error
    await assert.rejects(file.read(new Uint8Array(1), 0));
  });
}
