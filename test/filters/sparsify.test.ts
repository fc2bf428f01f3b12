/**
 * The sparsify filter against what no one here wrote: disks built with sgdisk, mkfs.vfat,
 * mkfs.ext4 -d, mkswap and debugfs; outputs checked with e2fsck, fsck.vfat, sgdisk -v,
 * debugfs rdump and qemu-img compare.
 */
import assert from 'node:assert/strict';
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { sparsify, sparsifyReport } from '../../src/filters/sparsify/index.js';
import { openImage } from '../../src/open.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { convertImage } from '../../src/ops/convert.js';
import { diskpipe, qemuImg, run, tempDir } from '../helpers/peers.js';
import { startServe } from '../nbd/helpers.js';
import { readFatFiles } from './fat-files.js';
import { type BuiltDisk, buildDisk, extract, randomFile } from './sparsify-disk.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-sparsify-');
let disk: BuiltDisk;
let out: string;

const SPEC = {
  espMiB: 40,
  rootMiB: 64,
  swapMiB: 8,
  rootFiles: {
    'keep-1.bin': 5 * MiB,
    'keep-2.bin': 3 * MiB + 123,
    'gone-1.bin': 6 * MiB,
    'gone-2.bin': 6 * MiB + 4567,
  },
  rootDeleted: ['gone-1.bin', 'gone-2.bin'],
  espFiles: { 'KEEP.BIN': 2 * MiB + 77, 'GONE.BIN': 4 * MiB },
  espDeleted: ['GONE.BIN'],
};

before(async () => {
  disk = await buildDisk(SPEC, dir);
  out = join(dir, 'out.raw');
  const r = diskpipe(['convert', '--sparsify', disk.path, out]);
  assert.equal(r.status, 0, r.stderr);
});

function allocated(path: string): number {
  return statSync(path).blocks * 512;
}

/** Blocks in use in an ext filesystem, in bytes (dumpe2fs -h). */
async function extUsed(path: string): Promise<number> {
  const text = await run('dumpe2fs', ['-h', path]);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)![1]);
  return (field('Block count') - field('Free blocks')) * field('Block size');
}

async function fsckExt(path: string): Promise<void> {
  await run('e2fsck', ['-fn', path]);
}

async function sameExtFiles(a: string, b: string): Promise<void> {
  const da = join(dir, `rdump-${Math.random().toString(36).slice(2)}`);
  const db = `${da}-b`;
  mkdirSync(da);
  mkdirSync(db);
  await run('debugfs', ['-R', `rdump / ${da}`, a]);
  await run('debugfs', ['-R', `rdump / ${db}`, b]);
  await run('diff', ['-r', da, db]);
  await run('rm', ['-rf', da, db]);
}

async function digestOf(path: string, sparse: boolean): Promise<string> {
  const opened = await openImage(path);
  const image = sparse ? await sparsify(opened) : opened;
  try {
    return (await checksumImage(image)).digest;
  } finally {
    await image.close();
  }
}

test('convert --sparsify: every partition still checks clean, every file is kept', async () => {
  const root = await extract(out, disk.root, join(dir, 'out-root.img'));
  const esp = await extract(out, disk.esp, join(dir, 'out-esp.img'));
  await fsckExt(root);
  await run('fsck.vfat', ['-n', esp]);
  await sameExtFiles(disk.parts.root, root);
  const files = readFatFiles(esp);
  assert.deepEqual([...files.keys()].sort(), [...disk.espFiles.keys()].sort());
  for (const [name, data] of disk.espFiles) assert.ok(files.get(name)!.equals(data), name);
  assert.match(await run('sgdisk', ['-v', out]), /No problems found/);
  // The swap header page (signature, UUID, label) is kept.
  const swapIn = Buffer.alloc(4096);
  const swapOut = Buffer.alloc(4096);
  const fdIn = openSync(disk.path, 'r');
  const fdOut = openSync(out, 'r');
  try {
    readSync(fdIn, swapIn, 0, 4096, disk.swap.start);
    readSync(fdOut, swapOut, 0, 4096, disk.swap.start);
  } finally {
    closeSync(fdIn);
    closeSync(fdOut);
  }
  assert.ok(swapIn.equals(swapOut));
});

test('convert --sparsify allocates no more than the used blocks plus metadata', async () => {
  const fsck = await run('fsck.vfat', ['-n', disk.parts.esp]);
  const clusters = Number(/(\d+)\/\d+ clusters/.exec(fsck)![1]);
  const used = (await extUsed(disk.parts.root)) + clusters * 512;
  // Slack: GPT, the FAT tables and reserved sectors, the swap header page.
  const bound = used + 2 * MiB;
  const got = allocated(out);
  assert.ok(got <= bound, `allocated ${got} > used ${used} + 2 MiB`);
  assert.ok(got <= allocated(disk.path) - disk.deletedBytes, 'deleted files were dropped');
});

test('a qcow2 and a compressed qcow2 source sparsify to the same bytes', async () => {
  const q = join(dir, 'disk.qcow2');
  const qc = join(dir, 'disk-c.qcow2');
  await qemuImg('convert', '-O', 'qcow2', disk.path, q);
  await qemuImg('convert', '-c', '-O', 'qcow2', disk.path, qc);
  const fromQcow2 = join(dir, 'from-qcow2.raw');
  const r = diskpipe(['convert', '--sparsify', q, fromQcow2]);
  assert.equal(r.status, 0, r.stderr);
  await qemuImg('compare', '-f', 'raw', '-F', 'raw', out, fromQcow2);
  const expected = diskpipe(['checksum', out]).stdout.split(' ')[0];
  for (const src of [q, qc, disk.path]) {
    const c = diskpipe(['checksum', '--sparsify', src]);
    assert.equal(c.status, 0, c.stderr);
    assert.equal(c.stdout.split(' ')[0], expected, src);
  }
});

test('info --sparsify and map --sparsify say what would be dropped', async () => {
  const r = diskpipe(['info', '--sparsify', '--json', disk.path]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout).sparsify;
  assert.equal(report.partitionTable, 'gpt');
  assert.deepEqual(
    report.partitions.map((p: { filesystem: string; action: string }) => [p.filesystem, p.action]),
    [
      ['fat32', 'sparsify'],
      ['ext4', 'sparsify'],
      ['swap', 'sparsify'],
    ],
  );
  assert.ok(report.droppedBytes >= disk.deletedBytes);
  const human = diskpipe(['info', '--sparsify', disk.path]);
  assert.match(human.stdout, /sparsify: .* would be dropped/);
  const map = diskpipe(['map', '--sparsify', '--json', disk.path]);
  assert.equal(map.status, 0, map.stderr);
  const entries = JSON.parse(map.stdout) as { length: number; data: boolean }[];
  const data = entries.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
  assert.ok(data <= allocated(out) + 4 * MiB, `map --sparsify shows ${data} data bytes`);
});

test('serve --sparsify exports the sparsified disk read-only; --writable/--overlay refused', async () => {
  for (const flag of ['--writable', '--overlay']) {
    const r = diskpipe(['serve', '--sparsify', flag, disk.path]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--sparsify is read-only/);
  }
  const served = await startServe(['--sparsify', '--port', '0', disk.path]);
  try {
    const copy = join(dir, 'served.raw');
    await run('nbdcopy', [served.uri, copy]);
    await qemuImg('compare', '-f', 'raw', '-F', 'raw', out, copy);
    const map = JSON.parse(await qemuImg('map', '--output=json', served.uri)) as {
      zero: boolean;
    }[];
    assert.ok(map.some((e) => e.zero));
  } finally {
    await served.stop();
  }
});

test('checksum --sparsify refuses stdin', () => {
  const r = diskpipe(['checksum', '--sparsify', '-'], { input: Buffer.alloc(512) });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--sparsify needs random access/);
});

test('needs_recovery ext4, FAT dirty bits and a hibernation swap pass through unchanged', async () => {
  const cases: [string, string, (path: string) => Promise<void>][] = [
    [
      'root',
      'needs_recovery',
      (p) => run('debugfs', ['-w', '-R', 'feature needs_recovery', p]).then(() => {}),
    ],
    ['root', 'error state', (p) => run('debugfs', ['-w', '-R', 'ssv state 3', p]).then(() => {})],
    [
      'root',
      'not cleanly unmounted',
      (p) => run('debugfs', ['-w', '-R', 'ssv state 0', p]).then(() => {}),
    ],
    ['esp', 'boot sector dirty bit', async (p) => poke(p, 0x41, 0x01)],
    // FAT32 entry 1, top byte: clearing bit 27 says "not cleanly shut down" (first FAT at
    // sector 32, mkfs.vfat's reserved area).
    ['esp', 'FAT entry 1 dirty bit', async (p) => poke(p, 32 * 512 + 7, 0, 0x08)],
    ['swap', 'S1SUSPEND', async (p) => pokeText(p, 4096 - 10, 'S1SUSPEND\0')],
  ];
  for (const [part, what, tweak] of cases) {
    const path = join(dir, `pass-${what.replace(/\W/g, '-')}.img`);
    copyFileSync(disk.parts[part as 'root' | 'esp' | 'swap'], path);
    // The untouched partition is sparsified (so the check below means something)...
    assert.notEqual(await digestOf(path, true), await digestOf(path, false), `${what}: control`);
    await tweak(path);
    // ...and the tweaked one passes through: the digest is that of the bytes as they are.
    assert.equal(await digestOf(path, true), await digestOf(path, false), what);
  }
});

test('needs_recovery root inside the GPT disk: that partition is copied byte for byte', async () => {
  const root = join(dir, 'recover-root.img');
  copyFileSync(disk.parts.root, root);
  await run('debugfs', ['-w', '-R', 'feature needs_recovery', root]);
  const path = join(dir, 'recover-disk.img');
  await run('cp', ['--sparse=always', disk.path, path]);
  await run('dd', [
    `if=${root}`,
    `of=${path}`,
    'bs=1M',
    `seek=${disk.root.start / MiB}`,
    'conv=notrunc',
    'status=none',
  ]);
  const o = join(dir, 'recover-out.raw');
  assert.equal(diskpipe(['convert', '--sparsify', path, o]).status, 0);
  await run('cmp', [root, await extract(o, disk.root, join(dir, 'recover-out-root.img'))]);
  // The other partitions are still sparsified.
  await run('cmp', [
    join(dir, 'out-esp.img'),
    await extract(o, disk.esp, join(dir, 'recover-out-esp.img')),
  ]);
});

test('an MBR disk with primary partitions is sparsified per partition', async () => {
  const path = join(dir, 'mbr.img');
  const rootAt = MiB;
  const swapAt = rootAt + disk.root.size;
  await run('truncate', ['-s', String(swapAt + disk.swap.size), path]);
  const mbr = Buffer.alloc(512);
  const entry = (i: number, type: number, start: number, size: number) => {
    mbr[446 + i * 16 + 4] = type;
    mbr.writeUInt32LE(start / 512, 446 + i * 16 + 8);
    mbr.writeUInt32LE(size / 512, 446 + i * 16 + 12);
  };
  entry(0, 0x83, rootAt, disk.root.size);
  entry(1, 0x82, swapAt, disk.swap.size);
  mbr.writeUInt16LE(0xaa55, 510);
  const fd = openSync(path, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
  for (const [file, at] of [
    [disk.parts.root, rootAt],
    [disk.parts.swap, swapAt],
  ] as const) {
    await run('dd', [
      `if=${file}`,
      `of=${path}`,
      'bs=1M',
      `seek=${at / MiB}`,
      'conv=notrunc',
      'status=none',
    ]);
  }
  const o = join(dir, 'mbr-out.raw');
  assert.equal(diskpipe(['convert', '--sparsify', path, o]).status, 0);
  const root = await extract(
    o,
    { start: rootAt, size: disk.root.size },
    join(dir, 'mbr-out-root.img'),
  );
  await fsckExt(root);
  await run('cmp', [root, join(dir, 'out-root.img')]);
  const report = JSON.parse(diskpipe(['info', '--sparsify', '--json', path]).stdout).sparsify;
  assert.equal(report.partitionTable, 'mbr');
  assert.deepEqual(
    report.partitions.map((p: { filesystem: string }) => p.filesystem),
    ['ext4', 'swap'],
  );
});

const EXT_VARIANTS: [string, string[]][] = [
  ['ext2', ['-t', 'ext2']],
  ['ext3', ['-t', 'ext3']],
  ['ext4 4K blocks', ['-t', 'ext4', '-b', '4096']],
  ['ext4 bigalloc', ['-t', 'ext4', '-b', '4096', '-O', 'bigalloc', '-C', '16384']],
  ['ext4 meta_bg', ['-t', 'ext4', '-O', 'meta_bg,^resize_inode']],
  ['ext4 without flex_bg', ['-t', 'ext4', '-O', '^flex_bg']],
  ['ext4 uninit_bg (gdt_csum)', ['-t', 'ext4', '-O', '^metadata_csum,uninit_bg']],
  ['ext4 without 64bit', ['-t', 'ext4', '-O', '^64bit']],
];

for (const [name, mkfs] of EXT_VARIANTS) {
  test(`whole-disk ${name}: fsck-clean, files kept, deleted blocks dropped`, async () => {
    const tree = join(dir, `tree-${name.replace(/\W/g, '-')}`);
    mkdirSync(tree);
    randomFile(join(tree, 'keep.bin'), 3 * MiB + 5);
    randomFile(join(tree, 'gone.bin'), 8 * MiB);
    const img = randomFile(`${tree}.img`, 96 * MiB);
    await run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', ...mkfs, '-d', tree, img]);
    await run('debugfs', ['-w', '-R', 'rm /gone.bin', img]);
    const o = `${tree}.out`;
    const image = await sparsify(await openImage(img));
    try {
      const report = await sparsifyReport(image);
      assert.equal(report.partitions[0]!.filesystem, name.split(' ')[0]);
      assert.ok(report.droppedBytes >= 8 * MiB, `${name}: ${report.droppedBytes} dropped`);
      await convertImage(image, o);
    } finally {
      await image.close();
    }
    await fsckExt(o);
    await sameExtFiles(img, o);
    const used = await extUsed(img);
    assert.ok(allocated(o) <= used, `${name}: allocated ${allocated(o)} > used ${used}`);
  });
}

/** ORs `set` into and clears `clear` from the byte at `at`. */
function poke(path: string, at: number, set: number, clear = 0): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = (b[0]! | set) & ~clear;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

function pokeText(path: string, at: number, text: string): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.from(text, 'latin1'), 0, text.length, at);
  } finally {
    closeSync(fd);
  }
}
