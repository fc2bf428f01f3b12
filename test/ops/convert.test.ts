import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptImageError } from '../../src/errors.js';
import { openImage } from '../../src/open.js';
import { type ConvertOptions, convertImage } from '../../src/ops/convert.js';
import { diskpipe, qemuImg, qemuIo, qemuMap, sparseFile, tempDir } from '../helpers/peers.js';
import { CountingImage, FailingImage, writeBytes, writeRuns } from './util.js';

const dir = tempDir();
const KiB = 1024;
const MiB = 1024 * KiB;

/** 24 MiB + 1000 bytes of mixed content: data, written zeroes, holes, an odd tail. */
function source(name: string): string {
  const path = sparseFile(join(dir, name), 24 * MiB + 1000);
  writeRuns(path, [
    [0, 100 * KiB],
    [MiB + 4096, 2 * MiB],
    [9 * MiB, 64 * KiB],
    [24 * MiB, 1000],
  ]);
  writeBytes(path, Buffer.alloc(MiB), 5 * MiB);
  return path;
}

function ok(r: { status: number | null; stderr: string }) {
  assert.equal(r.status, 0, r.stderr);
}

function leftovers(where: string): string[] {
  return readdirSync(where).filter((n) => n.includes('.diskpipe-'));
}

const src = source('src.raw');

test('convert -O raw: same bytes, exact size, sparse', async () => {
  const out = join(dir, 'out.raw');
  ok(diskpipe(['convert', src, out]));
  assert.ok(readFileSync(out).equals(readFileSync(src)));
  assert.equal(statSync(out).size, 24 * MiB + 1000);
  assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'raw', src, out), /identical/);
  // Data is read, so the 1 MiB of written zeroes becomes a hole, as with qemu-img convert.
  assert.ok(statSync(out).blocks * 512 < 3 * MiB, 'written zeroes dropped');
  // --copy-range moves data in the kernel: holes kept, allocation as in the source.
  const moved = join(dir, 'out-cfr.raw');
  ok(diskpipe(['convert', '--copy-range', src, moved]));
  assert.ok(readFileSync(moved).equals(readFileSync(src)));
  assert.ok(statSync(moved).blocks <= statSync(src).blocks, 'holes kept');
  assert.deepEqual(leftovers(dir), []);
});

const qcow2Variants: [string, string[]][] = [
  ['default', []],
  ['deflate', ['-c']],
  ['zstd', ['--compression', 'zstd']],
  ['512-byte clusters', ['--cluster-size', '512']],
  ['2M clusters, compressed', ['--cluster-size', '2M', '-c']],
];

for (const [name, flags] of qcow2Variants) {
  test(`convert -O qcow2 (${name}): qemu-img check clean, compare equal`, async () => {
    const out = join(dir, `out-${name.replace(/\W+/g, '-')}.qcow2`);
    ok(diskpipe(['convert', '-O', 'qcow2', ...flags, src, out]));
    await qemuImg('check', '-q', out);
    assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', src, out), /identical/);
    // Only clusters holding data are allocated.
    const map = await qemuMap(out);
    const allocated = map.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
    const limit = flags.includes('2M') ? 4 * 2 * MiB : 4 * MiB; // 4 data clusters of 2 MiB
    assert.ok(allocated <= limit, `allocated ${allocated}`);
    if (flags.includes('zstd')) {
      const info = JSON.parse(await qemuImg('info', '--output=json', out));
      assert.equal(info['format-specific'].data['compression-type'], 'zstd');
    }
  });
}

test('convert -B: a qcow2 overlay holding only what differs from the backing file', async () => {
  const sub = join(dir, 'overlays');
  mkdirSync(sub);
  const base = sparseFile(join(dir, 'base.raw'), 16 * MiB);
  writeRuns(base, [[0, 8 * MiB]], 3);
  // The new disk: the base, with one cluster changed, 1 MiB zeroed, and new data at 12 MiB.
  const changed = join(dir, 'changed.raw');
  writeFileSync(changed, readFileSync(base));
  writeRuns(changed, [[2 * MiB, 64 * KiB]], 5);
  writeBytes(changed, Buffer.alloc(MiB), 4 * MiB);
  writeRuns(changed, [[12 * MiB, 128 * KiB]], 6);
  const out = join(sub, 'overlay.qcow2');
  ok(diskpipe(['convert', '-O', 'qcow2', '-B', '../base.raw', changed, out]));
  await qemuImg('check', '-q', out);
  const info = JSON.parse(await qemuImg('info', '--output=json', out));
  assert.equal(info['backing-filename'], '../base.raw');
  assert.equal(info['backing-filename-format'], 'raw');
  assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'qcow2', changed, out), /identical/);
  const own = (await qemuMap(out)).filter((e) => e.depth === 0 && e.present);
  const bytes = own.reduce((n, e) => n + e.length, 0);
  assert.equal(bytes, 64 * KiB + MiB + 128 * KiB, JSON.stringify(own));
  // The zeroed range reads as zero from the overlay itself (zero flag), not from the base.
  assert.ok(own.some((e) => e.start === 4 * MiB && e.zero && !e.data));
});

test('convert SRC -: raw bytes on stdout', () => {
  const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [main, 'convert', src, '-'], { maxBuffer: 64 * MiB });
  assert.equal(r.status, 0, r.stderr?.toString());
  assert.ok(r.stdout.equals(readFileSync(src)));
});

test('convert -n: writes into the existing image in place', async () => {
  const out = sparseFile(join(dir, 'existing.raw'), 32 * MiB);
  writeRuns(out, [[0, 32 * MiB]], 9);
  const inode = statSync(out).ino;
  ok(diskpipe(['convert', '-n', src, out]));
  assert.equal(statSync(out).ino, inode, 'same file, not replaced');
  const bytes = readFileSync(out);
  assert.ok(bytes.subarray(0, 24 * MiB + 1000).equals(readFileSync(src)));
  // Past the source's end the target keeps its own bytes.
  assert.notEqual(bytes[30 * MiB], 0);
  const fresh = sparseFile(join(dir, 'fresh.raw'), 24 * MiB + 1000);
  ok(diskpipe(['convert', '-n', '--target-is-zero', src, fresh]));
  assert.ok(readFileSync(fresh).equals(readFileSync(src)));
});

test('8 GiB image with 1 MiB of data: convert reads and writes under 16 MiB', async () => {
  const big = sparseFile(join(dir, 'big.raw'), 8 * 1024 * MiB);
  writeRuns(big, [
    [0, 512 * KiB],
    [5 * 1024 * MiB, 512 * KiB],
  ]);
  for (const format of ['raw', 'qcow2'] as const) {
    const image = new CountingImage(await openImage(big));
    const out = join(dir, `big-out.${format}`);
    const r = await convertImage(image, out, { format });
    await image.close();
    assert.ok(image.bytesRead < 16 * MiB, `${format}: read ${image.bytesRead}`);
    assert.ok(r.bytesWritten < 16 * MiB, `${format}: wrote ${r.bytesWritten}`);
    assert.ok(statSync(out).blocks * 512 < 16 * MiB, `${format}: allocated`);
    assert.match(await qemuImg('compare', '-f', 'raw', '-F', format, big, out), /identical/);
  }
});

test('a failing source leaves no temporary file and the old destination untouched', async () => {
  const out = join(dir, 'keep.raw');
  writeFileSync(out, 'precious');
  const inner = await openImage(src);
  const bad = new FailingImage(inner, 9 * MiB, 9 * MiB + 1, () => {
    return new CorruptImageError('L2 entry points past the end of the file');
  });
  const outputs: [ConvertOptions['format'], Record<string, string>][] = [
    ['raw', {}],
    ['qcow2', {}],
    ['vmdk', {}],
    ['vmdk', { subformat: 'streamOptimized' }],
    ['vhdx', {}],
    ['vpc', {}],
    ['vpc', { subformat: 'fixed' }],
    ['vdi', {}],
  ];
  for (const [format, formatOptions] of outputs) {
    await assert.rejects(convertImage(bad, out, { format, formatOptions }), (err) => {
      const e = err as { code: string; message: string };
      assert.equal(e.code, 'CORRUPT');
      assert.match(e.message, /at offset 9437184/);
      return true;
    });
    assert.equal(readFileSync(out, 'utf8'), 'precious');
    assert.deepEqual(leftovers(dir), []);
  }
  await inner.close();
});

test('no space left: a clear error, the temporary file removed', async (t) => {
  // A 4 MiB tmpfs (tests run as root in CI).
  const mnt = join(dir, 'small-fs');
  mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  assert.equal(m.status, 0, `mount tmpfs: ${m.stderr}`);
  t.after(() => spawnSync('umount', [mnt]));
  const big = sparseFile(join(dir, 'eight.raw'), 16 * MiB);
  writeRuns(big, [[0, 8 * MiB]]);
  for (const format of ['raw', 'qcow2']) {
    const r = diskpipe(['convert', '-O', format, big, join(mnt, `out.${format}`)]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^diskpipe: .*no space left on device/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.deepEqual(readdirSync(mnt), []);
  }
});

test('usage errors: exit 2 with one line', () => {
  for (const args of [
    ['convert', '-c', src, join(dir, 'x.raw')],
    ['convert', '--target-is-zero', src, join(dir, 'x.raw')],
    ['convert', '-O', 'qcow2', src, '-'],
    ['convert', '-O', 'qed', src, join(dir, 'x.qed')],
    ['convert', '-O', 'vmdk', '-o', 'subformat=vmfs', src, join(dir, 'x.vmdk')],
    ['convert', '-O', 'vmdk', src, '-'],
    ['convert', '--cluster-size', '3000', '-O', 'qcow2', src, join(dir, 'x.qcow2')],
    ['convert', src],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^diskpipe: /);
  }
  assert.deepEqual(leftovers(dir), []);
});

test('qcow2 sources (plain, deflate, zstd, backing chain) convert to raw and qcow2', async () => {
  const plain = join(dir, 'q-plain.qcow2');
  await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', src, plain);
  const deflate = join(dir, 'q-deflate.qcow2');
  await qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', src, deflate);
  const zstd = join(dir, 'q-zstd.qcow2');
  await qemuImg(
    'convert',
    '-c',
    '-o',
    'compression_type=zstd',
    '-f',
    'raw',
    '-O',
    'qcow2',
    src,
    zstd,
  );
  const top = join(dir, 'q-top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'q-plain.qcow2', '-F', 'qcow2', top);
  await qemuIo(top, ['write -P 0x77 3M 64k', 'write -z 0 64k'], 'qcow2');
  for (const input of [plain, deflate, zstd, top]) {
    for (const format of ['raw', 'qcow2']) {
      const out = `${input}.out.${format}`;
      ok(diskpipe(['convert', '-O', format, input, out]));
      if (format === 'qcow2') await qemuImg('check', '-q', out);
      assert.match(await qemuImg('compare', '-F', format, input, out), /identical/);
    }
  }
});

test('a corrupt qcow2 source: error naming the offset, destination untouched', async () => {
  const bad = join(dir, 'corrupt.qcow2');
  await qemuImg('create', '-f', 'qcow2', bad, '4M');
  await qemuIo(bad, ['write -P 0x11 0 64k', 'write -P 0x22 1M 64k'], 'qcow2');
  // Point the second L2 entry in use (guest 1 MiB) far past the end of the file.
  const header = readFileSync(bad);
  const l1 = Number(header.readBigUInt64BE(40));
  const l2 = Number(header.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  const entry = Buffer.alloc(8);
  entry.writeBigUInt64BE((1n << 63n) | 0x40000000000n);
  writeBytes(bad, entry, l2 + 16 * 8);
  const out = join(dir, 'corrupt-out.raw');
  writeFileSync(out, 'precious');
  const r = diskpipe(['convert', bad, out]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /offset/);
  assert.equal(readFileSync(out, 'utf8'), 'precious');
  assert.deepEqual(leftovers(dir), []);
});

for (const [name, args] of [
  ['deflate qcow2', ['-O', 'qcow2', '-c']],
  ['streamOptimized vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
] as [string, string[]][]) {
  test(`convert ${name} -O raw: as sparse as qemu-img's output, same bytes`, async () => {
    // Zero 4 KiB blocks inside data, a written-zero MiB, holes: the source above.
    const input = join(dir, `sparse-in-${name.replace(/\W+/g, '-')}`);
    await qemuImg('convert', '-f', 'raw', ...args, src, input);
    const ours = join(dir, 'sparse-ours.raw');
    const theirs = join(dir, 'sparse-theirs.raw');
    ok(diskpipe(['convert', '-O', 'raw', input, ours]));
    await qemuImg('convert', '-O', 'raw', input, theirs);
    assert.match(await qemuImg('compare', '-f', 'raw', '-F', 'raw', theirs, ours), /identical/);
    assert.equal(statSync(ours).size, statSync(theirs).size);
    const allocated = statSync(ours).blocks * 512;
    assert.ok(
      allocated <= statSync(theirs).blocks * 512,
      `${allocated} bytes allocated, qemu-img ${statSync(theirs).blocks * 512}`,
    );
  });
}
