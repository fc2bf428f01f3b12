/**
 * diskpipe's NBD client against real servers: qemu-nbd (qcow2 and raw), nbdkit memory, file,
 * data, and the blocksize-policy filter (a server that insists on 4 KiB alignment).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { collectExtents } from '../../src/image/extents.js';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll, zeroRuns } from '../helpers/extents.js';
import { qemuImg, qemuIo, qemuMap, tempDir } from '../helpers/peers.js';
import { withNbdPeer } from './helpers.js';

const dir = tempDir();

function runsOf(list: { offset: number; length: number; zero: boolean }[]) {
  return zeroRuns(list.map((e) => ({ start: e.offset, length: e.length, zero: e.zero })));
}

test('qemu-nbd -f qcow2: guest bytes and base:allocation extents, export names', async () => {
  const path = join(dir, 'a.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '16M');
  await qemuIo(path, ['write -P 0x41 64k 1M', 'write -z 3M 64k', 'write -P 0x42 15M 4k'], 'qcow2');
  const expected = join(dir, 'a.raw');
  await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', path, expected);
  await withNbdPeer('qemu-nbd', ['-f', 'qcow2', '-t', '-r', '-x', 'disk', path], async (uri) => {
    const image = await openImage(uri('disk'));
    assert.equal(image.format, 'raw');
    assert.equal(image.size, 16 * 1024 * 1024);
    assert.equal(image.capabilities.extents, true);
    assert.ok((await readAll(image)).equals(readFileSync(expected)));
    const ours = await checkedExtents(image);
    assert.deepEqual(runsOf(ours), zeroRuns(await qemuMap(path, 'qcow2')));
    // Unaligned sub-ranges are clipped exactly.
    const part = await checkedExtents(image, 65536 + 1000, 3 * 1024 * 1024);
    assert.equal(part[0]!.offset, 65536 + 1000);
    await image.close();
    await assert.rejects(openImage(uri('other')), { code: 'NOT_FOUND' });
  });
});

test('qemu-nbd -f raw, writable: diskpipe writes, zeroes and flushes', async () => {
  const path = join(dir, 'w.raw');
  writeFileSync(path, Buffer.alloc(4 * 1024 * 1024));
  const data = randomBytes(3 * 1024 * 1024 + 77);
  await withNbdPeer('qemu-nbd', ['-f', 'raw', '-t', path], async (uri) => {
    const image = await openImage(uri(), { writable: true });
    await image.write!(data, 1000);
    await image.zero!(2 * 1024 * 1024, 65536);
    await image.flush!();
    await image.close();
  });
  const model = Buffer.alloc(4 * 1024 * 1024);
  model.set(data, 1000);
  model.fill(0, 2 * 1024 * 1024, 2 * 1024 * 1024 + 65536);
  assert.ok(readFileSync(path).equals(model));
});

test('nbdkit memory 1G: a writable destination with sparse extents', async () => {
  await withNbdPeer('nbdkit', ['memory', '1G'], async (uri) => {
    const image = await openImage(uri(), { writable: true });
    assert.equal(image.size, 2 ** 30);
    assert.deepEqual(await checkedExtents(image), [
      { offset: 0, length: 2 ** 30, zero: true, hole: true },
    ]);
    const data = randomBytes(5 * 1024 * 1024);
    await image.write!(data, 512 * 1024 * 1024);
    await image.zero!(512 * 1024 * 1024 + 1024 * 1024, 1024 * 1024);
    await image.flush!();
    const back = new Uint8Array(data.length);
    await image.read(back, 512 * 1024 * 1024);
    data.fill(0, 1024 * 1024, 2 * 1024 * 1024);
    assert.ok(Buffer.from(back).equals(data));
    const ext = await checkedExtents(image);
    assert.deepEqual(ext[0], { offset: 0, length: 512 * 1024 * 1024, zero: true, hole: true });
    assert.equal(ext.at(-1)!.zero, true);
    assert.equal(ext.at(-1)!.offset + ext.at(-1)!.length, 2 ** 30);
    assert.ok(ext.some((e) => !e.zero && e.offset === 512 * 1024 * 1024));
    await image.close();
  });
});

test('nbdkit data: exact bytes and extents of a pattern export', async () => {
  const args = ['data', '1 2 3 @0x100000 4 5 6 @0x1ffff0 7', 'size=2M'];
  await withNbdPeer('nbdkit', args, async (uri) => {
    const image = await openImage(uri());
    assert.equal(image.size, 2 * 1024 * 1024);
    const expected = Buffer.alloc(2 * 1024 * 1024);
    expected.set([1, 2, 3], 0);
    expected.set([4, 5, 6], 0x100000);
    expected[0x1ffff0] = 7;
    assert.ok((await readAll(image)).equals(expected));
    // Every extent that says zero really is zero, and the data bytes lie in data extents.
    for (const e of await checkedExtents(image)) {
      if (e.zero) assert.ok(expected.subarray(e.offset, e.offset + e.length).every((b) => b === 0));
    }
    const at = async (o: number) => (await collectExtents(image.extents(o, 1)))[0]!.zero;
    assert.deepEqual(
      [await at(0), await at(0x100001), await at(0x1ffff0), await at(0x80000)],
      [false, false, false, true],
    );
    await image.close();
  });
});

test('nbdkit file: the format inside the export is probed; its references are untrusted', async () => {
  const path = join(dir, 'inner.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '8M');
  await qemuIo(path, ['write -P 0x55 1M 128k'], 'qcow2');
  await withNbdPeer('nbdkit', ['file', path], async (uri) => {
    const image = await openImage(uri());
    assert.equal(image.format, 'qcow2');
    const expected = join(dir, 'inner.raw');
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', path, expected);
    assert.ok((await readAll(image)).equals(readFileSync(expected)));
    await image.close();
    const forcedRaw = await openImage(uri(), { format: 'raw' });
    assert.ok((await readAll(forcedRaw)).equals(readFileSync(path)));
    await forcedRaw.close();
  });
});

test('nbdkit file: a qcow2 with a backing file is refused over NBD', async () => {
  const base = join(dir, 'base.raw');
  writeFileSync(base, Buffer.alloc(1024 * 1024, 0x99));
  const top = join(dir, 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'raw', top);
  await withNbdPeer('nbdkit', ['file', top], async (uri) => {
    await assert.rejects(openImage(uri()), { code: 'UNTRUSTED_REFERENCE' });
  });
});

test('a server that insists on 4 KiB blocks: unaligned reads and writes still work', async () => {
  const args = [
    '--filter=blocksize-policy',
    'memory',
    '4M',
    'blocksize-minimum=4096',
    'blocksize-error-policy=error',
  ];
  await withNbdPeer('nbdkit', args, async (uri) => {
    const image = await openImage(uri(), { writable: true });
    const data = randomBytes(10_000);
    await image.write!(data, 1234);
    await image.zero!(5000, 100);
    data.fill(0, 5000 - 1234, 5100 - 1234);
    const back = new Uint8Array(10_000);
    await image.read(back, 1234);
    assert.ok(Buffer.from(back).equals(data));
    const ext = await checkedExtents(image, 100, 20_000);
    assert.equal(ext[0]!.offset, 100);
    await image.close();
  });
});

test('a server without structured replies (nbdkit --no-sr): simple replies, one data extent', async () => {
  const args = ['--no-sr', 'data', '1 2 3 @0x80000 9', 'size=1M'];
  await withNbdPeer('nbdkit', args, async (uri) => {
    const image = await openImage(uri());
    assert.equal(image.capabilities.extents, false);
    const expected = Buffer.alloc(1024 * 1024);
    expected.set([1, 2, 3], 0);
    expected[0x80000] = 9;
    assert.ok((await readAll(image)).equals(expected));
    assert.deepEqual(await checkedExtents(image), [
      { offset: 0, length: 1024 * 1024, zero: false, hole: false },
    ]);
    await image.close();
  });
});
