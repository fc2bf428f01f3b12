import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { collectExtents } from '../../src/image/extents.js';
import type { Image } from '../../src/image/types.js';
import { openImage } from '../../src/open.js';
import { readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';
import { ourQemuMap } from '../helpers/qemu-compare.js';
import { streamOptimized } from './vmdk-stream-writer.js';
import { checkAgainstQemu, fileRange, KiB, MiB, mixedRaw } from './vmdk-vdi-peer.js';

const dir = tempDir('diskpipe-vmdk-');
const src = await mixedRaw(dir);
const srcBytes = readFileSync(src);

const SUBFORMATS = [
  'monolithicSparse',
  'streamOptimized',
  'twoGbMaxExtentSparse',
  'twoGbMaxExtentFlat',
  'monolithicFlat',
] as const;

async function withImage(image: Image, fn: (image: Image) => Promise<void>): Promise<void> {
  try {
    await fn(image);
  } finally {
    await image.close();
  }
}

for (const sub of SUBFORMATS) {
  test(`vmdk ${sub}: content, extents, map and info agree with qemu-img`, async () => {
    const path = join(dir, `${sub}.vmdk`);
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${sub}`, src, path);
    const image = await checkAgainstQemu(path, join(dir, `${sub}.out`));
    await withImage(image, async () => {
      assert.equal(image.format, 'vmdk');
      assert.deepEqual(await readAll(image), srcBytes);
      const info = JSON.parse(await qemuImg('info', '--output=json', path));
      const ours = image.describe!();
      assert.equal(ours.virtualSize, info['virtual-size']);
      assert.equal(ours.clusterSize, info['cluster-size']);
      const peer = info['format-specific'].data;
      const mine = ours.specific as typeof peer;
      assert.equal(mine.cid, peer.cid);
      assert.equal(mine['parent-cid'], peer['parent-cid']);
      assert.equal(mine['create-type'], sub);
      const strip = (list: Record<string, unknown>[]) =>
        list.map(({ filename, ...rest }) => ({ ...rest, file: String(filename).split('/').pop() }));
      assert.deepEqual(strip(mine.extents), strip(peer.extents));
    });
  });
}

test('vmdk: a bare descriptor is probed by its text', async () => {
  const path = join(dir, 'probe.vmdk');
  await qemuImg('convert', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', src, path);
  const image = await openImage(path);
  await withImage(image, async () => {
    assert.equal(image.format, 'vmdk');
    assert.equal(image.size, srcBytes.length);
  });
});

test('vmdk: zero grains read as zeroes and map as present zero', async () => {
  const path = join(dir, 'zeroed.vmdk');
  await qemuImg('create', '-f', 'vmdk', '-o', 'zeroed_grain=on', path, '3M');
  await qemuIo(path, [
    'write -P 0x61 0 1M',
    'write -z 64k 128k', // two whole grains: zero grains (GTE = 1)
    'write -z 400k 10k', // unaligned: written zeroes inside an allocated grain
    'write -z 2M 64k', // a zero grain where nothing was allocated
    'write -P 0x62 2500k 7k',
  ]);
  const image = await checkAgainstQemu(path, join(dir, 'zeroed.out'));
  await withImage(image, async () => {
    const map = await ourQemuMap(image);
    assert.ok(
      map.some((e) => e.start === 64 * KiB && e.length === 128 * KiB && e.present && e.zero),
      'zero grains are present zeroes',
    );
  });
});

test('vmdk: a delta link reads unallocated grains from its parent', async () => {
  const base = join(dir, 'base.vmdk');
  const child = join(dir, 'child.vmdk');
  await qemuImg('convert', '-O', 'vmdk', src, base);
  await qemuImg('create', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', base, '-F', 'vmdk', child);
  await qemuIo(child, ['write -P 0x77 100k 8k', 'write -z 1M 64k', 'write -P 0x78 4M 64k']);
  const image = await checkAgainstQemu(child, join(dir, 'child.out'));
  await withImage(image, async () => {
    const d = image.describe!();
    assert.equal(d.backingFilename, base);
    assert.equal(d.backingFormat, 'vmdk');
    assert.equal(image.backing?.format, 'vmdk');
  });
});

test('vmdk: hand-written descriptor with sparse and flat extents in a row', async () => {
  // Extent files: a sparse file of the first 2 MiB, then two ranges of one flat file.
  const part1 = join(dir, 'multi-part1.raw');
  writeFileSync(part1, srcBytes.subarray(0, 2 * MiB));
  await qemuImg('convert', '-O', 'vmdk', part1, join(dir, 'multi-s1.vmdk'));
  const flat = join(dir, 'multi-flat.bin');
  // 1 MiB of junk that the descriptor skips, then the rest of the source.
  writeFileSync(flat, Buffer.concat([Buffer.alloc(MiB, 0xee), srcBytes.subarray(2 * MiB)]));
  const rest = (srcBytes.length - 2 * MiB) / 512;
  const desc = join(dir, 'multi.vmdk');
  writeFileSync(
    desc,
    [
      '# Disk DescriptorFile',
      'version=1',
      'CID=abcdef01',
      'parentCID=ffffffff',
      'createType="twoGbMaxExtentSparse"',
      // No blank line right before an extent line: qemu 7.2 would read that extent twice.
      '# Extent description',
      `RW ${(2 * MiB) / 512} SPARSE "multi-s1.vmdk"`,
      `RW 1000 FLAT "multi-flat.bin" ${MiB / 512}`,
      `RW ${rest - 1000} FLAT "multi-flat.bin" ${MiB / 512 + 1000}`,
      '',
    ].join('\n'),
  );
  const image = await checkAgainstQemu(desc, join(dir, 'multi.out'));
  await withImage(image, async () => {
    assert.deepEqual(await readAll(image), srcBytes);
    const d = image.describe!().specific as { extents: { format: string }[] };
    assert.deepEqual(
      d.extents.map((e) => e.format),
      ['SPARSE', 'FLAT', 'FLAT'],
    );
  });
});

// qemu skips ZERO and RDONLY extent lines, so this one is checked against known bytes.
test('vmdk: ZERO and RDONLY extents', async () => {
  const flat = join(dir, 'zx-flat.bin');
  writeFileSync(flat, Buffer.alloc(64 * KiB, 0x5a));
  const desc = join(dir, 'zx.vmdk');
  writeFileSync(
    desc,
    '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n' +
      'RW 128 FLAT "zx-flat.bin" 0\nRW 256 ZERO\nRDONLY 128 FLAT "zx-flat.bin" 0\n',
  );
  const image = await openImage(desc);
  await withImage(image, async () => {
    const expected = Buffer.concat([
      Buffer.alloc(64 * KiB, 0x5a),
      Buffer.alloc(128 * KiB),
      Buffer.alloc(64 * KiB, 0x5a),
    ]);
    assert.deepEqual(await readAll(image), expected);
    const ext = await collectExtents(image.extents());
    assert.deepEqual(
      ext.map((e) => [e.offset, e.length, e.zero, e.hole]),
      [
        [0, 64 * KiB, false, false],
        [64 * KiB, 128 * KiB, true, true],
        [192 * KiB, 64 * KiB, false, false],
      ],
    );
    const map = await ourQemuMap(image);
    assert.deepEqual(map[1], {
      start: 64 * KiB,
      length: 128 * KiB,
      depth: 0,
      present: true,
      zero: true,
      data: false,
    });
  });
});

test('vmdk: 2 GiB split extents (sparse and flat) past the extent boundary', async () => {
  const big = sparseFile(join(dir, 'big.raw'), 2 * 1024 * MiB + 3 * MiB);
  await qemuIo(
    big,
    [
      'write -P 0x21 0 64k',
      'write -P 0x22 2147479552 8k',
      `write -P 0x23 ${2 * 1024 * MiB + 3 * MiB - 512} 512`,
    ],
    'raw',
  );
  for (const sub of ['twoGbMaxExtentSparse', 'twoGbMaxExtentFlat']) {
    const path = join(dir, `big-${sub}.vmdk`);
    await qemuImg('convert', '-O', 'vmdk', '-o', `subformat=${sub}`, big, path);
    const image = await checkAgainstQemu(path, join(dir, `big-${sub}.out`));
    await withImage(image, async () => {
      const d = image.describe!().specific as { extents: unknown[] };
      assert.equal(d.extents.length, 2);
      const edge = Buffer.alloc(8 * KiB);
      await image.read(edge, 2147479552);
      assert.ok(edge.every((b) => b === 0x22));
    });
  }
});

test('vmdk: VMware-style stream-optimized file (grain directory in the footer)', async () => {
  const path = join(dir, 'vmware-stream.vmdk');
  writeFileSync(path, streamOptimized(srcBytes));
  // The writer is checked against the peer first: qemu must read the source back.
  await qemuImg('convert', '-O', 'raw', path, join(dir, 'vmware-stream.check'));
  assert.deepEqual(readFileSync(join(dir, 'vmware-stream.check')), srcBytes);
  const image = await checkAgainstQemu(path, join(dir, 'vmware-stream.out'));
  await withImage(image, async () => {
    assert.deepEqual(await readAll(image), srcBytes);
    assert.equal(
      (image.describe!().specific as Record<string, unknown>)['create-type'],
      'streamOptimized',
    );
  });
});

test('vmdk: stream-optimized grains in bare deflate and small grains', async () => {
  const path = join(dir, 'raw-deflate.vmdk');
  writeFileSync(path, streamOptimized(srcBytes, { raw: true, grainSectors: 16 }));
  const image = await openImage(path);
  await withImage(image, async () => {
    assert.deepEqual(await readAll(image), srcBytes);
  });
});

test('vmdk: unaligned and concurrent reads agree with the source', async () => {
  for (const sub of ['streamOptimized', 'monolithicSparse']) {
    const path = join(dir, `${sub}.vmdk`);
    await qemuImg('convert', '-O', 'vmdk', '-o', `subformat=${sub}`, src, path);
    const image = await openImage(path);
    await withImage(image, async () => {
      let seed = 12345;
      const rnd = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const reads = Array.from({ length: 200 }, () => {
        const offset = rnd(image.size - 1);
        const length = 1 + rnd(Math.min(300 * KiB, image.size - offset));
        return { offset, length };
      });
      await Promise.all(
        reads.map(async ({ offset, length }) => {
          const buf = Buffer.alloc(length);
          await image.read(buf, offset);
          assert.ok(
            buf.equals(srcBytes.subarray(offset, offset + length)),
            `${sub} ${offset}+${length}`,
          );
        }),
      );
      // Extents over an unaligned range are clipped to it.
      const part = await collectExtents(image.extents(200 * KiB + 7, 900 * KiB));
      assert.equal(part[0]!.offset, 200 * KiB + 7);
      assert.equal(
        part.reduce((n, e) => n + e.length, 0),
        900 * KiB,
      );
    });
  }
});

test('vmdk: mapping of a flat extent gives host offsets in the extent file', async () => {
  const path = join(dir, 'monolithicFlat.vmdk');
  await qemuImg('convert', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', src, path);
  const image = await openImage(path);
  await withImage(image, async () => {
    const map = await ourQemuMap(image);
    const dataAt = map.find((e) => e.data && !e.zero && e.start === MiB);
    assert.equal(dataAt?.offset, MiB);
    const flat = fileRange(join(dir, 'monolithicFlat-flat.vmdk'), MiB, 16);
    assert.ok(flat.every((b) => b === 0x33));
  });
});

test('vmdk and vdi: mapping() refuses ranges outside the image', async () => {
  const vmdk = join(dir, 'range.vmdk');
  const vdi = join(dir, 'range.vdi');
  await qemuImg('convert', '-O', 'vmdk', src, vmdk);
  await qemuImg('convert', '-O', 'vdi', src, vdi);
  for (const path of [vmdk, vdi]) {
    const image = await openImage(path);
    await withImage(image, async () => {
      await assert.rejects(async () => collectExtents(image.extents(image.size - 1, 2)), {
        code: 'OUT_OF_RANGE',
      });
      const walk = async () => {
        for await (const _ of image.mapping!(image.size - 10, 11)) {
          // nothing: the range check fails first
        }
      };
      await assert.rejects(walk(), { code: 'OUT_OF_RANGE' });
    });
  }
});
