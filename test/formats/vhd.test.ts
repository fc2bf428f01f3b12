import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';
import {
  isZero,
  openCheckedAgainstQemu,
  ourQemuMap,
  patch,
  readAt,
} from '../helpers/qemu-compare.js';
import { expectFailure, MiB, mixedRaw } from './vhd-shared.js';

const dir = tempDir('diskpipe-vhd-');
const SIZE = 37 * MiB + 3 * 512; // not a CHS size: qemu rounds it up unless force_size=on

function checksum(buf: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < at || i >= at + 4) sum += buf[i]!;
  return ~sum >>> 0;
}

/** Edits a 512-byte footer (or 1024-byte dynamic header) in place and fixes its checksum. */
function editStruct(path: string, at: number, size: 512 | 1024, edit: (b: Buffer) => void): void {
  const buf = readAt(path, at, size);
  edit(buf);
  const field = size === 512 ? 64 : 36;
  buf.writeUInt32BE(checksum(buf, field), field);
  patch(path, at, buf);
}

/** Edits both footer copies of a dynamic VHD. */
function editFooters(path: string, edit: (b: Buffer) => void): void {
  editStruct(path, 0, 512, edit);
  editStruct(path, statSync(path).size - 512, 512, edit);
}

async function dynamicImage(name: string, size = 6 * MiB): Promise<string> {
  const raw = await mixedRaw(dir, `${name}.raw`, size);
  const path = join(dir, `${name}.vhd`);
  await qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic', raw, path);
  return path;
}

for (const subformat of ['dynamic', 'fixed'] as const) {
  for (const forceSize of [false, true]) {
    test(`vpc ${subformat}${forceSize ? ' force_size' : ''}: bytes, size, extents and map as qemu`, async () => {
      const name = `${subformat}-${forceSize ? 'fs' : 'chs'}`;
      const raw = await mixedRaw(dir, `${name}.raw`, SIZE);
      const path = join(dir, `${name}.vhd`);
      const o = `subformat=${subformat}${forceSize ? ',force_size=on' : ''}`;
      await qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', o, raw, path);
      // qemu probes fixed VHDs as raw (the footer is at the end); diskpipe probes a valid
      // fixed footer when the name ends in .vhd (issue 14), so -f is optional here.
      const format = subformat === 'fixed' ? 'vpc' : undefined;
      const image = await openCheckedAgainstQemu(path, dir, {
        format,
        compareHoles: subformat !== 'fixed',
      });
      try {
        assert.equal(image.format, 'vpc');
        if (forceSize) assert.equal(image.size, SIZE);
        else assert.ok(image.size > SIZE, 'CHS geometry rounds the size up');
        const d = image.describe!();
        assert.equal(d.format, 'vpc');
        assert.equal(d.clusterSize, subformat === 'dynamic' ? 2 * MiB : undefined);
        assert.equal((d.specific as { subformat: string }).subformat, subformat);
        assert.equal(
          (d.specific as Record<string, string>)['size-from'],
          forceSize ? 'current-size' : 'chs',
        );
      } finally {
        await image.close();
      }
      const probed = await openImage(path);
      assert.equal(probed.format, 'vpc');
      await probed.close();
    });
  }
}

test('vpc: -f vhd is an alias; map host offsets point at the block data', async () => {
  const path = await dynamicImage('alias');
  const image = await openImage(path, { format: 'vhd' });
  assert.equal(image.format, 'vpc');
  // Map entries carry the host offset of each block's data (after its sector bitmap).
  const map = await ourQemuMap(image);
  const first = map[0]!;
  assert.equal(first.data, true);
  assert.deepEqual(readAt(path, first.offset!, 16), Buffer.alloc(16, 0x11));
  await image.close();
});

test('vpc dynamic: a sector whose bitmap bit is clear reads as zero', async () => {
  const path = await dynamicImage('bitmap');
  const before = await openImage(path);
  const expected = await readAll(before);
  await before.close();
  // Block 0 (bitmap at BAT[0] * 512): clear sectors 8..15 (bits are MSB first).
  const bat0 = readAt(path, 1536, 4).readUInt32BE(0);
  patch(path, bat0 * 512 + 1, Buffer.from([0x00]));
  expected.fill(0, 8 * 512, 16 * 512);
  const image = await openImage(path);
  assert.ok((await readAll(image)).equals(expected));
  const ext = await checkedExtents(image, 0, MiB);
  assert.deepEqual(
    ext.map((e) => [e.offset, e.length, e.zero]),
    [
      [0, 4096, false],
      [4096, 4096, true],
      [8192, MiB - 8192, false],
    ],
  );
  await image.close();
});

test('vpc differencing: parent through a relative W2ru locator, bitmaps choose the layer', async () => {
  const parentRaw = sparseFile(join(dir, 'parent.raw'), 6 * MiB);
  await qemuIo(parentRaw, ['write -P 0xaa 0 6M'], 'raw');
  const childRaw = sparseFile(join(dir, 'child.raw'), 6 * MiB);
  await qemuIo(childRaw, ['write -P 0xcc 1M 64k', 'write -P 0xdd 4100k 8k'], 'raw');
  const parent = join(dir, 'parent.vhd');
  const child = join(dir, 'child.vhd');
  await qemuImg('convert', '-f', 'raw', '-O', 'vpc', parentRaw, parent);
  await qemuImg('convert', '-f', 'raw', '-O', 'vpc', childRaw, child);
  // What qemu reads from each file on its own (qemu ignores bitmaps and parents).
  await qemuImg('convert', '-O', 'raw', parent, join(dir, 'parent.out'));
  await qemuImg('convert', '-O', 'raw', child, join(dir, 'child.out'));
  const parentBytes = readFileSync(join(dir, 'parent.out'));
  const childBytes = readFileSync(join(dir, 'child.out'));
  const size = childBytes.length;

  const parentId = readAt(parent, 68, 16);
  const locator = Buffer.from('.\\parent.vhd', 'utf16le');
  editFooters(child, (b) => b.writeUInt32BE(4, 60)); // disk type: differencing
  editStruct(child, 512, 1024, (h) => {
    parentId.copy(h, 40);
    Buffer.from('parent.vhd', 'utf16le').swap16().copy(h, 64);
    h.write('W2ru', 576, 'latin1');
    h.writeUInt32BE(1, 580);
    h.writeUInt32BE(locator.length, 584);
    h.writeBigUInt64BE(1792n, 592); // unused tail of the BAT's sector
  });
  patch(child, 1792, locator);
  // Child block 0 holds 1M..1M+64k; clear bitmap bits for the first 4 KiB of that data.
  const bat0 = readAt(child, 1536, 4).readUInt32BE(0);
  patch(child, bat0 * 512 + 256, Buffer.from([0x00]));

  const expected = Buffer.alloc(size);
  const blocks = Math.ceil(size / (2 * MiB));
  const batBlocks = Array.from({ length: blocks }, (_, i) =>
    readAt(child, 1536 + 4 * i, 4).readUInt32BE(0),
  );
  assert.deepEqual(
    batBlocks.map((b) => b !== 0xffffffff),
    [true, false, true, false].slice(0, blocks),
  );
  for (let s = 0; s < size / 512; s++) {
    const block = Math.floor((s * 512) / (2 * MiB));
    const inChild = batBlocks[block] !== 0xffffffff && !(s >= 2048 && s < 2056);
    (inChild ? childBytes : parentBytes).copy(expected, s * 512, s * 512, (s + 1) * 512);
  }
  const image = await openImage(child);
  try {
    assert.equal(image.describe!().backingFilename, './parent.vhd');
    assert.ok((await readAll(image)).equals(expected));
    const map = await ourQemuMap(image);
    assert.ok(map.some((e) => e.depth === 1 && e.data));
    assert.ok(map.some((e) => e.depth === 0 && e.data));
    for (const e of await checkedExtents(image)) {
      if (e.zero) assert.ok(isZero(expected.subarray(e.offset, e.offset + e.length)));
    }
    // Block 1 is not in the child: the parent's data shows through.
    assert.deepEqual(
      (await checkedExtents(image, 2 * MiB, 2 * MiB)).map((e) => e.zero),
      [false],
    );
  } finally {
    await image.close();
  }
  await expectFailure(child, 'UNTRUSTED_REFERENCE', /backing file/, { untrusted: true });

  const wrongParent = join(dir, 'wrong-parent.vhd');
  copyFileSync(child, wrongParent);
  editStruct(wrongParent, 512, 1024, (h) => h.fill(7, 40, 56));
  await expectFailure(wrongParent, 'CORRUPT', /not the VHD this disk was made from/);

  const windowsOnly = join(dir, 'windows-only.vhd');
  copyFileSync(child, windowsOnly);
  const absolute = Buffer.from('C:\\vms\\x.vhd', 'utf16le');
  editStruct(windowsOnly, 512, 1024, (h) => {
    h.write('W2ku', 576, 'latin1');
    h.writeUInt32BE(absolute.length, 584);
  });
  patch(windowsOnly, 1792, absolute);
  await expectFailure(windowsOnly, 'UNSUPPORTED', /no parent locator usable/);
});

test('vpc: hostile images fail with a clear error, quickly', async () => {
  const base = await dynamicImage('hostile');
  const variant = (name: string, edit: (path: string) => void) => {
    const path = join(dir, `${name}.vhd`);
    copyFileSync(base, path);
    edit(path);
    return path;
  };
  const size = statSync(base).size;
  const bat0 = readAt(base, 1536, 4).readUInt32BE(0);

  // One damaged footer copy is survivable; both is not.
  const oneBad = variant('one-bad-footer', (p) => patch(p, 64, Buffer.from([1, 2, 3, 4])));
  const img = await openImage(oneBad);
  await img.close();
  await expectFailure(
    variant('bad-footers', (p) => {
      patch(p, 64, Buffer.from([1, 2, 3, 4]));
      patch(p, size - 512 + 64, Buffer.from([1, 2, 3, 4]));
    }),
    'CORRUPT',
    /footer checksum/,
  );
  await expectFailure(
    variant('bad-header-sum', (p) => patch(p, 512 + 36, Buffer.from([9, 9, 9, 9]))),
    'CORRUPT',
    /dynamic disk header checksum/,
  );
  await expectFailure(
    variant('bat-past-eof', (p) => patch(p, 1536, Buffer.from([0x00, 0x10, 0x00, 0x00]))),
    'CORRUPT',
    /BAT entry 0 points past the end/,
  );
  await expectFailure(
    variant('block-size', (p) => editStruct(p, 512, 1024, (h) => h.writeUInt32BE(3000, 32))),
    'CORRUPT',
    /invalid block size/,
  );
  await expectFailure(
    variant('small-bat', (p) => editStruct(p, 512, 1024, (h) => h.writeUInt32BE(1, 28))),
    'CORRUPT',
    /smaller than the disk/,
  );
  await expectFailure(
    variant('huge-bat', (p) => editStruct(p, 512, 1024, (h) => h.writeUInt32BE(0x7fffffff, 28))),
    'UNSUPPORTED',
    /too large/,
  );
  await expectFailure(
    variant('bat-offset', (p) =>
      editStruct(p, 512, 1024, (h) => h.writeBigUInt64BE(1n << 50n, 16)),
    ),
    'CORRUPT',
    /past the end of the file/,
  );
  await expectFailure(
    variant('header-offset', (p) => editFooters(p, (f) => f.writeBigUInt64BE(1n << 40n, 16))),
    'CORRUPT',
    /dynamic disk header offset/,
  );
  await expectFailure(
    variant('truncated', (p) => truncateSync(p, bat0 * 512 + 4096)),
    'CORRUPT',
    /past the end|footer/,
  );
  await expectFailure(
    variant('too-big', (p) =>
      editFooters(p, (f) => {
        f.write('qem2', 28, 'latin1');
        f.writeBigUInt64BE(3n << 40n, 48);
      }),
    ),
    'CORRUPT',
    /2040 GiB/,
  );
  await expectFailure(
    variant('disk-type', (p) => editFooters(p, (f) => f.writeUInt32BE(7, 60))),
    'UNSUPPORTED',
    /disk type 7/,
  );
  const tiny = join(dir, 'tiny.vhd');
  patch(sparseFile(tiny, 100), 0, Buffer.from('conectix'));
  await expectFailure(tiny, 'CORRUPT', /too small/, { format: 'vpc' });
  const notVhd = sparseFile(join(dir, 'not.vhd'), 4096);
  await expectFailure(notVhd, 'CORRUPT', /not a VHD image/, { format: 'vpc' });

  // A fixed disk whose footer claims more data than the file holds.
  const fixedRaw = sparseFile(join(dir, 'fixed.raw'), 4 * MiB);
  const fixed = join(dir, 'short-fixed.vhd');
  await qemuImg(
    'convert',
    '-f',
    'raw',
    '-O',
    'vpc',
    '-o',
    'subformat=fixed,force_size=on',
    fixedRaw,
    fixed,
  );
  editStruct(fixed, 4 * MiB, 512, (f) => f.writeBigUInt64BE(BigInt(8 * MiB), 48));
  await expectFailure(fixed, 'CORRUPT', /truncated/, { format: 'vpc' });
});
