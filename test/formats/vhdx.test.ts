import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { checksumWithField } from '../../src/formats/vhdx/crc32c.js';
import type { Image } from '../../src/image/types.js';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, qemuMap, sparseFile, tempDir } from '../helpers/peers.js';
import { openCheckedAgainstQemu, ourQemuMap, patch, readAt } from '../helpers/qemu-compare.js';
import { expectFailure, MiB, mixedRaw, ourZeroRuns, qemuZeroRuns } from './vhd-shared.js';

const dir = tempDir('diskpipe-vhdx-');
const SIZE = 37 * MiB + 3 * 512;
const GiB = 1024 * MiB;

/** Checks that map entries point at the file bytes the image returns. */
async function checkHostOffsets(image: Image, path: string): Promise<void> {
  for (const e of await ourQemuMap(image)) {
    if (!e.data || e.offset === undefined) continue;
    const n = Math.min(e.length, 4096);
    const buf = Buffer.alloc(n);
    await image.read(buf, e.start);
    assert.ok(buf.equals(readAt(path, e.offset, n)), `host offset of ${e.start}`);
  }
}

const variants: [string, string][] = [
  ['dynamic', 'subformat=dynamic'],
  ['dynamic-1m', 'subformat=dynamic,block_size=1M'],
  ['dynamic-32m', 'subformat=dynamic,block_size=32M'],
  ['dynamic-nozero', 'subformat=dynamic,block_size=1M,block_state_zero=off'],
  ['fixed', 'subformat=fixed'],
  ['fixed-1m', 'subformat=fixed,block_size=1M'],
  ['fixed-nozero', 'subformat=fixed,block_size=2M,block_state_zero=off'],
];

for (const [name, options] of variants) {
  test(`vhdx ${name}: bytes and size as qemu, extents as qemu's raw conversion`, async () => {
    const raw = await mixedRaw(dir, `${name}.raw`, SIZE);
    const path = join(dir, `${name}.vhdx`);
    await qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', options, raw, path);
    // qemu reports no block status for vhdx (all "data"): the raw conversion's holes are the truth.
    const image = await openCheckedAgainstQemu(path, dir, { compareMap: false });
    try {
      assert.equal(image.format, 'vhdx');
      const d = image.describe!();
      const info = JSON.parse(await qemuImg('info', '--output=json', path)) as Record<
        string,
        number
      >;
      assert.equal(d.clusterSize, info['cluster-size']);
      assert.equal(d.dirty, false);
      assert.equal(
        (d.specific as Record<string, boolean>)['leave-blocks-allocated'],
        name.startsWith('fixed'),
      );
      await checkHostOffsets(image, path);
    } finally {
      await image.close();
    }
  });
}

test('vhdx over 4 GiB: BAT entries skip the interleaved sector bitmap entries', async () => {
  const raw = sparseFile(join(dir, 'big.raw'), 6 * GiB + 4096);
  await qemuIo(
    raw,
    [
      `write -P 0x31 ${4 * GiB - 4096} 8192`,
      `write -P 0x32 ${5 * GiB + 12345} 5000`,
      `write -P 0x33 ${6 * GiB + 3584} 512`,
    ],
    'raw',
  );
  for (const bs of ['1M', '32M']) {
    const path = join(dir, `big-${bs}.vhdx`);
    const out = join(dir, `big-${bs}.out`);
    await qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', `block_size=${bs}`, raw, path);
    await qemuImg('convert', '-O', 'raw', path, out);
    const image = await openImage(path);
    try {
      assert.equal(image.size, statSync(out).size);
      const runs = await ourZeroRuns(image);
      // qemu allocates the first 4 KiB of a raw file it creates: compare with the source's holes.
      assert.deepEqual(runs, qemuZeroRuns(await qemuMap(raw, 'raw'), image.size));
      assert.equal(runs.filter((r) => !r[2]).length, 3);
      for (const [start, end, zero] of runs) {
        if (zero) continue;
        const buf = Buffer.alloc(end - start);
        await image.read(buf, start);
        assert.ok(buf.equals(readAt(out, start, end - start)), `data at ${start}`);
      }
    } finally {
      await image.close();
    }
  }
});

/** Makes a VHDX whose log holds an entry that was never applied (a BAT update). */
async function dirtyImage(name: string): Promise<string> {
  const raw = await mixedRaw(dir, `${name}.raw`, 10 * MiB);
  const path = join(dir, `${name}.vhdx`);
  await qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', raw, path);
  // Fail qemu's write of the BAT (at 2 MiB, sector 4096) after it wrote the log entry.
  const spec = {
    driver: 'vhdx',
    file: {
      driver: 'blkdebug',
      'inject-error': [{ event: 'none', iotype: 'write', sector: 4096, errno: 5 }],
      image: { driver: 'file', filename: path },
    },
  };
  await assert.rejects(qemuIo(`json:${JSON.stringify(spec)}`, ['write -P 0x99 6M 64k']));
  return path;
}

test('vhdx with a pending log: replayed in memory, same bytes as qemu-img check -r all', async () => {
  const path = await dirtyImage('dirty');
  await assert.rejects(qemuImg('info', path), /log that needs to be replayed/);
  const repaired = join(dir, 'dirty-repaired.vhdx');
  copyFileSync(path, repaired);
  await qemuImg('check', '-r', 'all', repaired);
  await qemuImg('convert', '-O', 'raw', repaired, join(dir, 'dirty.out'));
  const expected = readFileSync(join(dir, 'dirty.out'));
  assert.ok(expected.subarray(6 * MiB, 6 * MiB + 65536).every((b) => b === 0x99));

  const before = readFileSync(path);
  const image = await openImage(path);
  try {
    const d = image.describe!();
    assert.equal((d.specific as Record<string, number>)['log-entries-replayed'], 1);
    assert.equal(d.dirty, true);
    assert.ok((await readAll(image)).equals(expected));
    for (const e of await checkedExtents(image)) {
      if (e.zero) assert.ok(expected.subarray(e.offset, e.offset + e.length).every((b) => b === 0));
    }
  } finally {
    await image.close();
  }
  assert.ok(readFileSync(path).equals(before), 'the image file is not modified');
});

/** Rewrites a checksummed structure (4 KiB header or 64 KiB region table) after `edit`. */
function editChecksummed(path: string, at: number, size: number, edit: (b: Buffer) => void): void {
  const buf = readAt(path, at, size);
  edit(buf);
  buf.writeUInt32LE(checksumWithField(buf, 4), 4);
  patch(path, at, buf);
}

function guidBytes(guid: string): Buffer {
  const h = guid.replaceAll('-', '');
  const b = Buffer.from(h, 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

/** File offset of the metadata region (from the first region table). */
function metadataRegion(path: string): number {
  const regions = readAt(path, 192 * 1024, 64 * 1024);
  const id = guidBytes('8b7ca206-4790-4b9a-b8fe-575f050f886e');
  for (let i = 0; i < regions.readUInt32LE(8); i++) {
    if (regions.subarray(16 + i * 32, 32 + i * 32).equals(id)) {
      return Number(regions.readBigUInt64LE(32 + i * 32));
    }
  }
  throw new Error('no metadata region');
}

/** File offset of a metadata item's data. */
function metadataItem(path: string, guid: string): number {
  const metaOffset = metadataRegion(path);
  const table = readAt(path, metaOffset, 64 * 1024);
  for (let i = 0; i < table.readUInt16LE(10); i++) {
    const at = 32 + i * 32;
    if (table.subarray(at, at + 16).equals(guidBytes(guid))) {
      return metaOffset + table.readUInt32LE(at + 16);
    }
  }
  throw new Error(`no metadata item ${guid}`);
}

test('vhdx: hostile images fail with a clear error, quickly', async () => {
  const raw = await mixedRaw(dir, 'hostile.raw', 10 * MiB);
  const base = join(dir, 'hostile.vhdx');
  await qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=1M', raw, base);
  const variant = (name: string, edit: (path: string) => void) => {
    const path = join(dir, `${name}.vhdx`);
    copyFileSync(base, path);
    edit(path);
    return path;
  };
  const BAT = 2 * MiB; // where qemu puts the BAT region
  const batEntry = (state: number, offsetMiB: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE((BigInt(offsetMiB) << 20n) | BigInt(state));
    return b;
  };
  const fileParams = metadataItem(base, 'caa16737-fa36-4d43-b3b6-33f0aa44e76b');
  const diskSize = metadataItem(base, '2fa54224-cd1b-4876-b211-5dbed83bf4b8');

  // One damaged header is survivable; two are not.
  const oneBad = variant('one-bad-header', (p) => patch(p, 64 * 1024 + 100, Buffer.from([1])));
  const ok = await openImage(oneBad);
  const reference = await openImage(base);
  assert.ok((await readAll(ok)).equals(await readAll(reference)));
  await ok.close();
  await reference.close();
  await expectFailure(
    variant('bad-headers', (p) => {
      patch(p, 64 * 1024 + 100, Buffer.from([1]));
      patch(p, 128 * 1024 + 100, Buffer.from([1]));
    }),
    'CORRUPT',
    /no valid VHDX header/,
  );
  await expectFailure(
    variant('bad-regions', (p) => {
      patch(p, 192 * 1024 + 100, Buffer.from([1]));
      patch(p, 256 * 1024 + 100, Buffer.from([1]));
    }),
    'CORRUPT',
    /no valid region table/,
  );
  await expectFailure(
    variant('overlap', (p) => {
      for (const at of [192 * 1024, 256 * 1024]) {
        // Second entry (metadata) moved onto the first (BAT).
        editChecksummed(p, at, 64 * 1024, (b) => b.writeBigUInt64LE(b.readBigUInt64LE(32), 64));
      }
    }),
    'CORRUPT',
    /overlaps/,
  );
  await expectFailure(
    variant('required-region', (p) => {
      for (const at of [192 * 1024, 256 * 1024]) {
        editChecksummed(p, at, 64 * 1024, (b) => {
          b.writeUInt32LE(3, 8);
          b.fill(0x5a, 80, 96);
          b.writeBigUInt64LE(BigInt(40 * MiB), 96);
          b.writeUInt32LE(MiB, 104);
          b.writeUInt32LE(1, 108);
        });
      }
    }),
    'UNSUPPORTED',
    /unknown required region/,
  );
  await expectFailure(
    variant('bat-past-eof', (p) => patch(p, BAT, batEntry(6, 4096))),
    'CORRUPT',
    /points past the end of the file/,
  );
  await expectFailure(
    variant('bat-in-header', (p) => patch(p, BAT, batEntry(6, 0))),
    'CORRUPT',
    /overlaps the header section/,
  );
  await expectFailure(
    variant('bat-on-bat', (p) => patch(p, BAT, batEntry(6, 2))),
    'CORRUPT',
    /overlaps the region/,
  );
  await expectFailure(
    variant('bat-state', (p) => patch(p, BAT, batEntry(4, 0))),
    'CORRUPT',
    /invalid state 4/,
  );
  await expectFailure(
    variant('bat-partial', (p) => patch(p, BAT, batEntry(7, 8))),
    'CORRUPT',
    /partially present/,
  );
  await expectFailure(
    variant('truncated', (p) => truncateSync(p, statSync(p).size - 2 * MiB)),
    'CORRUPT',
    /past the end/,
  );
  await expectFailure(
    variant('block-size', (p) => patch(p, fileParams, Buffer.from([3, 0, 0, 0]))),
    'CORRUPT',
    /invalid block size 3/,
  );
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(1n << 60n);
  await expectFailure(
    variant('disk-size', (p) => patch(p, diskSize, huge)),
    'CORRUPT',
    /virtual disk size/,
  );
  await expectFailure(
    variant('has-parent', (p) => patch(p, fileParams + 4, Buffer.from([2]))),
    'CORRUPT',
    /without a parent locator/,
  );
  await expectFailure(
    variant('differencing', (p) => {
      patch(p, fileParams + 4, Buffer.from([2]));
      // Add a parent locator item to the metadata table (which has no checksum).
      const table = metadataRegion(p);
      const count = readAt(p, table + 10, 2).readUInt16LE(0);
      patch(p, table + 32 + count * 32, guidBytes('a8d35f2d-b30b-454d-abf7-d3d84834ab0c'));
      patch(p, table + 10, Buffer.from([count + 1, 0]));
    }),
    'UNSUPPORTED',
    /differencing VHDX/,
  );
  await expectFailure(sparseFile(join(dir, 'not.vhdx'), MiB), 'CORRUPT', /not a VHDX image/, {
    format: 'vhdx',
  });
  const tiny = join(dir, 'tiny.vhdx');
  patch(sparseFile(tiny, 100), 0, Buffer.from('vhdxfile'));
  await expectFailure(tiny, 'CORRUPT', /past the end of the file/);

  // A log GUID with no valid entries has nothing to replay (as qemu): the image opens.
  const stale = variant('stale-log-guid', (p) => {
    for (const at of [64 * 1024, 128 * 1024]) {
      editChecksummed(p, at, 4096, (b) => b.fill(0x42, 48, 64));
    }
  });
  await qemuImg('info', stale);
  const image = await openImage(stale);
  assert.equal((image.describe!().specific as Record<string, number>)['log-entries-replayed'], 0);
  await image.close();
});
