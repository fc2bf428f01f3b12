import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { collectExtents } from '../../src/image/extents.js';
import { openImage } from '../../src/open.js';
import { readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, settleAllocation, tempDir } from '../helpers/peers.js';
import { ourQemuMap } from '../helpers/qemu-compare.js';
import { checkAgainstQemu, MiB, mixedRaw } from './vmdk-vdi-peer.js';

const dir = tempDir('diskpipe-vdi-');
const src = await mixedRaw(dir);
const srcBytes = readFileSync(src);

for (const mode of ['off', 'on']) {
  test(`vdi static=${mode}: content, extents, map and info agree with qemu-img`, async () => {
    const path = join(dir, `static-${mode}.vdi`);
    await qemuImg('convert', '-f', 'raw', '-O', 'vdi', '-o', `static=${mode}`, src, path);
    settleAllocation(path); // actual-size is compared with qemu-img info's
    const image = await checkAgainstQemu(path, join(dir, `static-${mode}.out`));
    try {
      assert.equal(image.format, 'vdi');
      assert.deepEqual(await readAll(image), srcBytes);
      const info = JSON.parse(await qemuImg('info', '--output=json', path));
      const ours = image.describe!();
      assert.equal(ours.virtualSize, info['virtual-size']);
      assert.equal(ours.clusterSize, info['cluster-size']);
      assert.equal(ours.actualSize, info['actual-size']);
      if (mode === 'on') {
        // A static image allocates every block; holes in the file are allocated zeroes.
        const ext = await collectExtents(image.extents());
        assert.ok(ext.every((e) => !e.hole));
        assert.ok(ext.some((e) => e.zero));
      }
    } finally {
      await image.close();
    }
  });
}

test('vdi: blocks written by qemu-io and a discarded (zero) block', async () => {
  const path = join(dir, 'written.vdi');
  await qemuImg('create', '-f', 'vdi', path, '6M');
  await qemuIo(path, ['write -P 0x31 3M 4k', 'write -P 0x32 100k 1M', 'write -P 0x33 5M 1M']);
  const first = await checkAgainstQemu(path, join(dir, 'written.out'));
  await first.close();
  // Mark the block of 5 MiB as discarded: it must read as zeroes (qemu agrees).
  const buf = readFileSync(path);
  const bmap = buf.readUInt32LE(0x154);
  assert.notEqual(buf.readUInt32LE(bmap + 5 * 4), 0xffffffff);
  buf.writeUInt32LE(0xfffffffe, bmap + 5 * 4);
  const discarded = join(dir, 'discarded.vdi');
  writeFileSync(discarded, buf);
  const image = await checkAgainstQemu(discarded, join(dir, 'discarded.out'));
  try {
    const tail = Buffer.alloc(MiB);
    await image.read(tail, 5 * MiB);
    assert.ok(tail.every((b) => b === 0));
    const map = await ourQemuMap(image);
    const last = map.at(-1)!;
    assert.equal(last.start + last.length, 6 * MiB);
    assert.ok(last.start <= 5 * MiB && last.present && last.zero && !last.data);
  } finally {
    await image.close();
  }
});

test('vdi: unaligned reads across block boundaries', async () => {
  const path = join(dir, 'static-off.vdi');
  await qemuImg('convert', '-O', 'vdi', src, path);
  const image = await openImage(path);
  try {
    for (const [offset, length] of [
      [MiB - 3, 7],
      [3 * MiB - 1000, 5000],
      [0, srcBytes.length],
      [srcBytes.length - 513, 513],
    ] as const) {
      const buf = Buffer.alloc(length);
      await image.read(buf, offset);
      assert.ok(buf.equals(srcBytes.subarray(offset, offset + length)), `${offset}+${length}`);
    }
  } finally {
    await image.close();
  }
});

/** Writes a patched copy of a fresh dynamic VDI; `edit` gets the bytes and the bmap offset. */
async function patchedVdi(name: string, edit: (b: Buffer, bmap: number) => void) {
  const good = join(dir, 'hostile-base.vdi');
  await qemuImg('convert', '-O', 'vdi', src, good);
  const buf = readFileSync(good);
  edit(buf, buf.readUInt32LE(0x154));
  const path = join(dir, name);
  writeFileSync(path, buf);
  return path;
}

async function rejects(path: string, code: string, message: RegExp) {
  await assert.rejects(
    (async () => {
      const image = await openImage(path);
      try {
        await collectExtents(image.extents());
        await readAll(image);
      } finally {
        await image.close();
      }
    })(),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, code, `${err.code}: ${err.message}`);
      assert.match(err.message, message);
      return true;
    },
  );
}

test('vdi hostile: headers and block maps that cannot be right', async () => {
  const cases: [string, (b: Buffer, bmap: number) => void, string, RegExp][] = [
    ['bmap-eof', (b) => b.writeUInt32LE(0x7ffffe00, 0x154), 'CORRUPT', /block map/],
    ['block-eof', (b, m) => b.writeUInt32LE(5, m), 'CORRUPT', /block 0 .* past the end/],
    ['block-huge', (b, m) => b.writeUInt32LE(0x7ffffff0, m), 'CORRUPT', /past the end/],
    ['blocks-absurd', (b) => b.writeUInt32LE(0x3fffffff, 0x180), 'CORRUPT', /too large/],
    ['bsize-odd', (b) => b.writeUInt32LE(1000, 0x178), 'CORRUPT', /block size/],
    ['bsize-zero', (b) => b.writeUInt32LE(0, 0x178), 'CORRUPT', /block size/],
    ['disk-big', (b) => b.writeBigUInt64LE(1n << 40n, 0x170), 'CORRUPT', /exceeds/],
    ['disk-absurd', (b) => b.writeBigUInt64LE(1n << 62n, 0x170), 'CORRUPT', /absurd/],
    ['misaligned', (b) => b.writeUInt32LE(1000, 0x158), 'CORRUPT', /misaligned/],
    ['hsize', (b) => b.writeUInt32LE(16, 0x48), 'CORRUPT', /header size/],
    ['version', (b) => b.writeUInt32LE(0x00010000, 0x44), 'UNSUPPORTED', /version 1\.0/],
    ['diff', (b) => b.writeUInt32LE(4, 0x4c), 'UNSUPPORTED', /differencing/],
    ['parent', (b) => b.fill(7, 0x1b8, 0x1c8), 'UNSUPPORTED', /parent/],
    ['sector', (b) => b.writeUInt32LE(4096, 0x168), 'UNSUPPORTED', /sector size/],
  ];
  for (const [name, edit, code, message] of cases) {
    await rejects(await patchedVdi(`${name}.vdi`, edit), code, message).catch((err) => {
      throw new Error(`case ${name}: ${err.message}`);
    });
  }
});

test('vdi hostile: truncated files', async () => {
  const head = await patchedVdi('trunc-head.vdi', () => {});
  truncateSync(head, 300);
  // Too short to hold a header, but still recognised: refused, not read as raw.
  await rejects(head, 'CORRUPT', /too small/);
  const data = await patchedVdi('trunc-data.vdi', () => {});
  truncateSync(data, 2 * MiB);
  await rejects(data, 'CORRUPT', /past the end/);
});
