import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openCounted } from '../helpers/counting-source.js';
import { checkedExtents, zeroRuns } from '../helpers/extents.js';
import { qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';
import { openCheckedAgainstQemu, patch, readAt } from '../helpers/qemu-compare.js';
import { expectFailure, MiB, mixedRaw } from './vhd-shared.js';

const dir = tempDir('diskpipe-qed-');
const SIZE = 37 * MiB + 3 * 512;

const variants: [string, string[]][] = [
  ['default', []],
  ['small-tables', ['-o', 'cluster_size=4k,table_size=2']],
  ['big-clusters', ['-o', 'cluster_size=1M,table_size=2']],
];

for (const [name, options] of variants) {
  test(`qed ${name}: bytes, size, extents and map as qemu`, async () => {
    const raw = await mixedRaw(dir, `${name}.raw`, SIZE);
    const path = join(dir, `${name}.qed`);
    await qemuImg('convert', '-f', 'raw', '-O', 'qed', ...options, raw, path);
    const image = await openCheckedAgainstQemu(path, dir);
    try {
      assert.equal(image.format, 'qed');
      const info = JSON.parse(await qemuImg('info', '--output=json', path)) as Record<
        string,
        unknown
      >;
      const d = image.describe!();
      assert.equal(d.clusterSize, info['cluster-size']);
      assert.equal(d.dirty, false);
      assert.equal(d.backingFilename, undefined);
    } finally {
      await image.close();
    }
  });
}

test('qed over a shorter raw backing file: zero clusters, copy-on-write, depth in map', async () => {
  const base = sparseFile(join(dir, 'base.raw'), 5 * MiB + 512);
  await qemuIo(base, ['write -P 0x55 0 3M', `write -P 0x56 ${5 * MiB} 512`], 'raw');
  const overlay = join(dir, 'over-raw.qed');
  await qemuImg('create', '-f', 'qed', '-b', 'base.raw', '-F', 'raw', overlay, '12M');
  await qemuIo(
    overlay,
    [
      'write -P 0x66 1M 64k',
      'write -P 0x67 1100000 5000', // partial cluster: the rest comes from the backing file
      'write -z 2M 128k', // zero clusters hide the backing data
      'write -P 0x68 7M 4k', // past the backing file's end
      `write -P 0x69 ${12 * MiB - 512} 512`,
    ],
    'qed',
  );
  const image = await openCheckedAgainstQemu(overlay, dir);
  try {
    const d = image.describe!();
    assert.equal(d.backingFilename, 'base.raw');
    assert.equal(d.backingFormat, 'raw');
    assert.equal(d.fullBackingFilename, join(dir, 'base.raw'));
  } finally {
    await image.close();
  }
});

test('qed over a qed backing file (probed), with its own holes and zero clusters', async () => {
  const base = join(dir, 'base.qed');
  await qemuImg('create', '-f', 'qed', '-o', 'cluster_size=4k', base, '8M');
  await qemuIo(base, ['write -P 0x71 0 2M', 'write -z 1M 8k', 'write -P 0x72 6M 4k'], 'qed');
  const overlay = join(dir, 'over-qed.qed');
  await qemuImg('create', '-f', 'qed', '-b', 'base.qed', '-F', 'qed', overlay, '8M');
  await qemuIo(overlay, ['write -P 0x73 512k 64k', 'write -z 6M 64k'], 'qed');
  const image = await openCheckedAgainstQemu(overlay, dir);
  try {
    assert.equal(image.backing?.format, 'qed');
    assert.equal(image.describe!().backingFormat, undefined);
  } finally {
    await image.close();
  }
  await expectFailure(
    overlay,
    'UNTRUSTED_REFERENCE',
    /'base.qed' refused: the image is opened with --untrusted/,
    {
      untrusted: true,
    },
  );
});

test('qed: the need-check flag is reported as dirty; the image still reads as qemu reads it', async () => {
  const raw = await mixedRaw(dir, 'dirty.raw', 4 * MiB);
  const path = join(dir, 'dirty.qed');
  await qemuImg('convert', '-f', 'raw', '-O', 'qed', raw, path);
  patch(path, 16, Buffer.from([0x02]));
  // qemu opens a need-check image read-only without checking it (its 7.2 info omits the flag).
  const image = await openCheckedAgainstQemu(path, dir);
  const d = image.describe!();
  assert.equal(d.dirty, true);
  assert.equal((d.specific as Record<string, boolean>)['need-check'], true);
  await image.close();
});

test('qed: a 60 TiB empty image walks its extents from the L1 table alone', async () => {
  const path = join(dir, 'huge.qed');
  await qemuImg('create', '-f', 'qed', path, '60T');
  const reads = { calls: 0, bytes: 0 };
  const image = await openCounted(path, reads);
  const opened = { ...reads };
  const extents = await checkedExtents(image);
  assert.deepEqual(
    zeroRuns(extents.map((e) => ({ start: e.offset, length: e.length, zero: e.zero }))),
    [[0, 60 * 1024 * 1024 * MiB, true]],
  );
  // Work is bounded by the L1 table, not by the 2^30 clusters: at most one extent per L1
  // entry (each covers 2 GiB), and the walk reads one table's worth (256 KiB) of the file: the
  // L1 table, no L2 table (every L1 entry is empty).
  assert.ok(extents.length <= 30 * 1024, `${extents.length} extents`);
  const walked = reads.bytes - opened.bytes;
  assert.ok(walked <= 256 * 1024, `the walk read ${walked} bytes`);
  await image.close();
});

test('qed: hostile images fail with a clear error, quickly', async () => {
  const raw = await mixedRaw(dir, 'hostile.raw', 4 * MiB);
  const base = join(dir, 'hostile.qed');
  await qemuImg('convert', '-f', 'raw', '-O', 'qed', raw, base);
  const variant = (name: string, edit: (path: string) => void) => {
    const path = join(dir, `${name}.qed`);
    copyFileSync(base, path);
    edit(path);
    return path;
  };
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u64 = (v: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return b;
  };
  const l1 = Number(readAt(base, 40, 8).readBigUInt64LE(0));
  const l2 = Number(readAt(base, l1, 8).readBigUInt64LE(0));

  await expectFailure(
    variant('feature', (p) => patch(p, 16, Buffer.from([0x10]))),
    'UNSUPPORTED',
    /unsupported QED features 0x10/,
  );
  await expectFailure(
    variant('cluster', (p) => patch(p, 4, u32(3000))),
    'CORRUPT',
    /invalid cluster size/,
  );
  await expectFailure(
    variant('table', (p) => patch(p, 8, u32(3))),
    'CORRUPT',
    /table size/,
  );
  await expectFailure(
    variant('odd-size', (p) => patch(p, 48, u64(4n * 1024n * 1024n + 100n))),
    'CORRUPT',
    /invalid image size/,
  );
  await expectFailure(
    variant('too-big', (p) => patch(p, 48, u64(1n << 50n))),
    'CORRUPT',
    /invalid image size/,
  );
  await expectFailure(
    variant('l1-offset', (p) => patch(p, 40, u64(1n << 40n))),
    'CORRUPT',
    /L1 table offset/,
  );
  await expectFailure(
    variant('l2-offset', (p) => patch(p, l1, u64(1n << 40n))),
    'CORRUPT',
    /invalid L2 table/,
  );
  await expectFailure(
    variant('data-misaligned', (p) => patch(p, l2, u64(BigInt(l2 + 512)))),
    'CORRUPT',
    /invalid offset/,
  );
  await expectFailure(
    variant('data-past-eof', (p) => patch(p, l2, u64(1n << 40n))),
    'CORRUPT',
    /invalid offset/,
  );
  await expectFailure(
    variant('absurd-entry', (p) => patch(p, l2, u64(0xffff_ffff_ffff_0000n))),
    'CORRUPT',
    /absurd/,
  );
  await expectFailure(
    variant('backing-name', (p) => {
      patch(p, 16, Buffer.from([0x01]));
      patch(p, 56, u32(60000));
      patch(p, 60, u32(10000));
    }),
    'CORRUPT',
    /backing file name lies outside the header/,
  );
  const missing = variant('backing-missing', (p) => {
    patch(p, 16, Buffer.from([0x01]));
    patch(p, 56, u32(1024));
    patch(p, 60, u32(11));
    patch(p, 1024, Buffer.from('nothere.qed'));
  });
  await expectFailure(missing, 'NOT_FOUND', /nothere\.qed/);
  const loop = variant('backing-loop', (p) => {
    patch(p, 16, Buffer.from([0x01]));
    patch(p, 56, u32(1024));
    patch(p, 60, u32(16));
    patch(p, 1024, Buffer.from('backing-loop.qed'));
  });
  await expectFailure(loop, 'CORRUPT', /loops/);
  await expectFailure(sparseFile(join(dir, 'not.qed'), 4096), 'CORRUPT', /not a QED image/, {
    format: 'qed',
  });
});
