/**
 * Hostile metadata: superblocks, group descriptors, bitmaps, GPTs and FAT boot sectors that
 * are corrupt, truncated or random. The filter must pass such partitions through (or drop
 * nothing it cannot vouch for) or fail with a DiskpipeError: never crash, hang or drop bytes
 * on the strength of metadata that does not check out.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { DiskpipeError } from '../../src/errors.js';
import { SparsifyImage, sparsifyReport } from '../../src/filters/sparsify/index.js';
import { crc32c } from '../../src/formats/vhdx/crc32c.js';
import { collectExtents } from '../../src/image/extents.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { writeLuks1 } from '../helpers/luks.js';
import { run, tempDir } from '../helpers/peers.js';
import { MemImage } from './mem-image.js';
import { randomFile } from './sparsify-disk.js';

const MiB = 1024 * 1024;
const SB = 1024;
const dir = tempDir('diskpipe-sparsify-hostile-');
let ext: Buffer;
let fat: Buffer;
let gpt: Buffer;
let lvm: Buffer;
let luks: Buffer;

before(async () => {
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  randomFile(join(tree, 'keep.bin'), 2 * MiB);
  randomFile(join(tree, 'gone.bin'), 3 * MiB);
  const img = randomFile(join(dir, 'ext.img'), 16 * MiB);
  await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, img]);
  await run('debugfs', ['-w', '-R', 'rm /gone.bin', img]);
  ext = readFileSync(img);
  const fatImg = randomFile(join(dir, 'fat.img'), 16 * MiB);
  await run('mkfs.vfat', ['-F', '16', '-s', '2', fatImg]);
  fat = readFileSync(fatImg);
  const disk = join(dir, 'gpt.img');
  await run('truncate', ['-s', String(18 * MiB), disk]);
  await run('sgdisk', ['-n', '1:2048:+16M', '-t', '1:8300', disk]);
  await run('dd', [`if=${img}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none']);
  gpt = readFileSync(disk);
  // The same ext4 in a partition typed as an LVM physical volume, and a LUKS volume.
  const typed = join(dir, 'lvm.img');
  await run('truncate', ['-s', String(18 * MiB), typed]);
  await run('sgdisk', ['-n', '1:2048:+16M', '-t', '1:8e00', typed]);
  await run('dd', [`if=${img}`, `of=${typed}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none']);
  lvm = readFileSync(typed);
  const crypt = join(dir, 'luks.img');
  await run('truncate', ['-s', String(18 * MiB), crypt]);
  await run('sgdisk', ['-n', '1:2048:+16M', '-t', '1:8300', crypt]);
  const header = writeLuks1(join(dir, 'luks-header.img'), 0); // header and key material, 2 MiB
  randomFile(join(dir, 'luks-body.img'), 8 * MiB);
  await run('dd', [
    `if=${join(dir, 'luks-body.img')}`,
    `of=${crypt}`,
    'bs=1M',
    'seek=3',
    'conv=notrunc',
    'status=none',
  ]);
  await run('dd', [
    `if=${header}`,
    `of=${crypt}`,
    'bs=1M',
    'seek=1',
    'conv=notrunc',
    'status=none',
  ]);
  luks = readFileSync(crypt);
});

test('LVM-typed and LUKS partitions pass through', async () => {
  const typed = await sparsifyReport(await SparsifyImage.open(new MemImage(lvm)));
  assert.equal(typed.partitions[0]!.action, 'pass');
  assert.match(typed.partitions[0]!.reason ?? '', /LVM/);
  const crypt = await sparsifyReport(await SparsifyImage.open(new MemImage(luks)));
  assert.equal(crypt.partitions[0]!.action, 'pass');
  assert.match(crypt.partitions[0]!.reason ?? '', /LUKS/);
  for (const bytes of [lvm, luks]) {
    const image = await SparsifyImage.open(new MemImage(bytes));
    assert.equal(await digest(image), await digest(new MemImage(bytes)));
  }
});

/** Re-signs the ext superblock so a change is judged on its meaning, not its checksum. */
function resign(b: Buffer): void {
  b.writeUInt32LE(~crc32c(b.subarray(SB, SB + 0x3fc)) >>> 0, SB + 0x3fc);
}

async function digest(image: MemImage | SparsifyImage): Promise<string> {
  return (await checksumImage(image, { threads: 0 })).digest;
}

/** Opens, maps, reads and hashes a sparsified image; a failure must be a DiskpipeError. */
async function exercise(bytes: Buffer): Promise<SparsifyImage | undefined> {
  try {
    const image = await SparsifyImage.open(new MemImage(bytes));
    const extents = await collectExtents(image.extents());
    assert.equal(
      extents.reduce((n, e) => n + e.length, 0),
      bytes.length,
    );
    for (const at of [0, Math.floor(bytes.length / 3), bytes.length - 65536]) {
      await image.read(new Uint8Array(65536), Math.max(0, at));
    }
    return image;
  } catch (err) {
    if (err instanceof DiskpipeError) return undefined;
    throw err;
  }
}

test('the unmodified ext4 image is sparsified (the control for the cases below)', async () => {
  const image = await SparsifyImage.open(new MemImage(ext));
  const r = await sparsifyReport(image);
  assert.equal(r.partitions[0]!.action, 'sparsify');
  assert.ok(r.droppedBytes >= 3 * MiB);
});

const SUPERBLOCK_CASES: [string, (b: Buffer) => void][] = [
  ['block size 2^50', (b) => b.writeUInt32LE(40, SB + 0x18)],
  ['block count past the partition', (b) => b.writeUInt32LE(0xfffffff0, SB + 0x04)],
  ['7 blocks per group', (b) => b.writeUInt32LE(7, SB + 0x20)],
  ['0 blocks per group', (b) => b.writeUInt32LE(0, SB + 0x20)],
  ['descriptor size 3', (b) => b.writeUInt16LE(3, SB + 0xfe)],
  ['flex group of 2^31', (b) => b.writeUInt8(31, SB + 0x174)],
  ['inode size 3', (b) => b.writeUInt16LE(3, SB + 0x58)],
  ['first data block 5', (b) => b.writeUInt32LE(5, SB + 0x14)],
  [
    'meta_bg with first_meta_bg past the table',
    (b) => {
      b.writeUInt32LE(b.readUInt32LE(SB + 0x60) | 0x10, SB + 0x60);
      b.writeUInt32LE(1 << 30, SB + 0x104);
    },
  ],
  [
    'unknown incompat feature',
    (b) => b.writeUInt32LE((b.readUInt32LE(SB + 0x60) | 0x80000000) >>> 0, SB + 0x60),
  ],
  [
    'unknown ro_compat feature',
    (b) => b.writeUInt32LE((b.readUInt32LE(SB + 0x64) | 0x80000000) >>> 0, SB + 0x64),
  ],
  ['errors recorded', (b) => b.writeUInt32LE(3, SB + 0x194)],
];

for (const [name, change] of SUPERBLOCK_CASES) {
  test(`ext superblock with ${name} passes through`, async () => {
    const b = Buffer.from(ext);
    change(b);
    resign(b);
    const image = await SparsifyImage.open(new MemImage(b));
    const r = await sparsifyReport(image);
    assert.equal(r.partitions[0]!.action, 'pass', JSON.stringify(r));
    assert.equal(await digest(image), await digest(new MemImage(b)));
  });
}

test('a superblock whose checksum does not match passes through', async () => {
  const b = Buffer.from(ext);
  b.writeUInt32LE(b.readUInt32LE(SB + 0x4) - 1, SB + 0x4);
  const r = await sparsifyReport(await SparsifyImage.open(new MemImage(b)));
  assert.match(r.partitions[0]!.reason ?? '', /checksum/);
});

test('garbage group descriptors: nothing is dropped', async () => {
  const b = Buffer.from(ext);
  // 1 KiB blocks: the descriptor table is block 2.
  for (let i = 2048; i < 3072; i++) b[i] = (i * 151) & 0xff;
  const image = await SparsifyImage.open(new MemImage(b));
  assert.equal((await sparsifyReport(image)).droppedBytes, 0);
  assert.equal(await digest(image), await digest(new MemImage(b)));
});

test('a corrupt block bitmap (bad checksum): its group keeps every block', async () => {
  const clean = await sparsifyReport(await SparsifyImage.open(new MemImage(ext)));
  const b = Buffer.from(ext);
  const bitmapBlock = b.readUInt32LE(2048);
  b.fill(0, bitmapBlock * 1024, bitmapBlock * 1024 + 1024);
  const image = await SparsifyImage.open(new MemImage(b));
  const r = await sparsifyReport(image);
  assert.ok(r.droppedBytes < clean.droppedBytes);
  // Group 0 is blocks 1..8192: no free run there.
  for await (const run of image.freeRuns(0, 8193 * 1024))
    assert.fail(`dropped ${run.start}-${run.end}`);
});

test('ext2 (no checksums): a bitmap pointer moved to an all-zero block is not believed', async () => {
  const tree = join(dir, 'tree2');
  mkdirSync(tree);
  randomFile(join(tree, 'keep.bin'), 3 * MiB);
  const img = randomFile(join(dir, 'ext2.img'), 16 * MiB);
  await run('mkfs.ext4', ['-q', '-F', '-t', 'ext2', '-E', 'nodiscard', '-d', tree, img]);
  const b = readFileSync(img);
  const control = await SparsifyImage.open(new MemImage(Buffer.from(b)));
  // 1 KiB blocks: descriptor table at block 2; a zeroed block near the end says "all free".
  const zeroBlock = 16 * 1024 - 10;
  b.fill(0, zeroBlock * 1024, zeroBlock * 1024 + 1024);
  b.writeUInt32LE(zeroBlock, 2048);
  const image = await SparsifyImage.open(new MemImage(b));
  const group0 = async (i: SparsifyImage) => {
    let n = 0;
    for await (const r of i.freeRuns(0, 8193 * 1024)) n += r.end - r.start;
    return n;
  };
  assert.ok((await group0(control)) > 0);
  assert.equal(await group0(image), 0);
});

test('a truncated ext image passes through', async () => {
  const b = Buffer.from(ext.subarray(0, 8 * MiB));
  const r = await sparsifyReport(await SparsifyImage.open(new MemImage(b)));
  assert.equal(r.partitions[0]!.action, 'pass');
});

test('GPT with a bad header or array checksum: the whole disk passes through', async () => {
  const control = await sparsifyReport(await SparsifyImage.open(new MemImage(gpt)));
  assert.equal(control.partitions[0]!.action, 'sparsify');
  for (const at of [512 + 40, 1024 + 10]) {
    const b = Buffer.from(gpt);
    b[at]! ^= 0xff;
    const r = await sparsifyReport(await SparsifyImage.open(new MemImage(b)));
    assert.match(r.reason ?? '', /checksum/);
    assert.equal(r.droppedBytes, 0);
  }
});

test('a FAT boot sector with impossible fields is not read as FAT', async () => {
  const cases: [string, (b: Buffer) => void][] = [
    ['3 sectors per cluster', (b) => (b[0x0d] = 3)],
    ['0 FATs', (b) => (b[0x10] = 0)],
    ['FAT size larger than the volume', (b) => b.writeUInt16LE(0xffff, 0x16)],
    [
      'more sectors than the partition',
      (b) => {
        b.writeUInt16LE(0, 0x13);
        b.writeUInt32LE(0xffffff, 0x20);
      },
    ],
  ];
  for (const [name, change] of cases) {
    const b = Buffer.from(fat);
    change(b);
    const r = await sparsifyReport(await SparsifyImage.open(new MemImage(b)));
    assert.equal(r.droppedBytes, 0, name);
  }
});

test('at most 32 filesystems per disk get a free-space map; the rest pass through', async () => {
  const path = join(dir, 'many.img');
  await run('truncate', ['-s', String(40 * MiB), path]);
  const args: string[] = [];
  for (let i = 1; i <= 34; i++) args.push('-n', `${i}:0:+1M`, '-t', `${i}:8200`);
  await run('sgdisk', ['-U', 'R', ...args, path]);
  const b = readFileSync(path);
  // A SWAPSPACE2 header (version 1, 255 pages) at the start of every partition.
  for (let i = 0; i < 34; i++) {
    const at = (2048 + i * 2048) * 512;
    b.writeUInt32LE(1, at + 1024);
    b.writeUInt32LE(255, at + 1028);
    b.write('SWAPSPACE2', at + 4096 - 10, 'latin1');
  }
  const r = await sparsifyReport(await SparsifyImage.open(new MemImage(b)));
  assert.equal(r.partitions.filter((p) => p.action === 'sparsify').length, 32);
  const rest = r.partitions.filter((p) => p.action === 'pass');
  assert.equal(rest.length, 2);
  assert.match(rest[0]!.reason ?? '', /more than 32 filesystems/);
});

/** A small deterministic PRNG so a failing case can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('random corruption of ext, FAT and GPT metadata never crashes', async () => {
  const rand = prng(16);
  const targets: [Buffer, number, number, boolean][] = [
    [ext, SB, 4096, true],
    [ext, 0, 512 * 1024, true],
    [fat, 0, 64 * 1024, false],
    [gpt, 0, 3 * 512, false],
  ];
  for (let i = 0; i < 240; i++) {
    const [base, from, to, ext4] = targets[i % targets.length]!;
    const b = Buffer.from(base);
    const n = 1 + Math.floor(rand() * 16);
    for (let k = 0; k < n; k++)
      b[from + Math.floor(rand() * (to - from))] = Math.floor(rand() * 256);
    if (ext4 && rand() < 0.5) resign(b);
    await exercise(b);
  }
});
