/**
 * qcow2 reader against qemu: images made by qemu-img/qemu-io at test time, every feature
 * qemu-img 7.2 writes; content, extents and map compared with qemu-img convert/map.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ByteSource } from '../../src/image/types.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage, openImageOn } from '../../src/open.js';
import { qemuImg, qemuIo, run, settleAllocation, sparseFile, tempDir } from '../helpers/peers.js';
import { be64, checkAgainstQemu, patch } from '../helpers/qemu-compare.js';

const dir = tempDir('diskpipe-qcow2-');
const MiB = 1024 * 1024;

async function create(name: string, size: number | string, opts = ''): Promise<string> {
  const path = join(dir, name);
  await qemuImg('create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), path, String(size));
  return path;
}

/** A mix of every write kind qemu-io has: data, unaligned data, zeroes, unmapped zeroes, discard. */
function mixedWrites(size: number, cluster: number): string[] {
  return [
    `write -P 0x11 0 ${3 * cluster}`,
    `write -P 0x22 ${cluster + 123} 5000`, // unaligned, inside allocated clusters
    `write -P 0x33 ${8 * cluster + 7} ${2 * cluster + 1000}`, // unaligned, allocating
    `write -z ${cluster} ${cluster}`, // zero over data
    `write -zu ${16 * cluster} ${2 * cluster}`,
    `write -P 0x44 ${20 * cluster} ${4 * cluster}`,
    `discard ${21 * cluster} ${cluster}`,
    `write -z ${30 * cluster} ${cluster}`, // zero on unallocated
    `write -P 0x55 ${size - 512} 512`, // the last sector
  ];
}

test('qcow2 v3, 64 KiB clusters: mixed writes, odd size, last sector', async () => {
  const size = 10 * MiB + 1536;
  const path = await create('v3.qcow2', size);
  await qemuIo(path, mixedWrites(size, 65536));
  await checkAgainstQemu(path, dir);
});

test('qcow2 v2 (compat=0.10): mixed writes', async () => {
  const size = 4 * MiB;
  const path = await create('v2.qcow2', size, 'compat=0.10');
  await qemuIo(path, mixedWrites(size, 65536));
  await checkAgainstQemu(path, dir);
  const image = await openImage(path);
  assert.deepEqual(image.describe?.().specific, {
    compat: '0.10',
    'compression-type': 'zlib',
    'refcount-bits': 16,
  });
  await image.close();
});

for (const cluster of [512, 4096, 2 * MiB]) {
  test(`qcow2 cluster size ${cluster}: mixed writes`, async () => {
    const size = Math.max(64 * cluster, 3 * MiB) + 512;
    const path = await create(`c${cluster}.qcow2`, size, `cluster_size=${cluster}`);
    await qemuIo(path, mixedWrites(size, cluster));
    await checkAgainstQemu(path, dir);
  });
}

test('qcow2 512-byte clusters across several L2 tables', async () => {
  // 512-byte clusters: one L2 table maps only 32 KiB, so this walks many tables.
  const path = await create('c512-wide.qcow2', 2 * MiB, 'cluster_size=512');
  await qemuIo(path, [
    'write -P 0x61 30000 80000',
    'write -z 40000 1024',
    'write -P 0x62 1000000 3',
    'write -P 0x63 2096640 512',
  ]);
  await checkAgainstQemu(path, dir);
});

/** A raw source with compressible patterns, random (incompressible) clusters and holes. */
async function compressionSource(name: string, size: number): Promise<string> {
  const raw = sparseFile(join(dir, name), size);
  await qemuIo(
    raw,
    ['write -P 0x5a 0 1M', 'write -P 0x01 1234567 100000', `write -P 0x7f ${size - 512} 512`],
    'raw',
  );
  const noise = randomBytes(200_000);
  const withNoise = join(dir, `${name}.noise`);
  writeFileSync(withNoise, noise);
  await run('dd', [`if=${withNoise}`, `of=${raw}`, 'bs=4096', 'seek=700', 'conv=notrunc']);
  return raw;
}

for (const [type, cluster] of [
  ['zlib', 65536],
  ['zstd', 65536],
  ['zlib', 4096],
  ['zstd', 2 * MiB],
  ['zlib', 512],
] as const) {
  test(`qcow2 compressed clusters: ${type}, cluster size ${cluster}`, async () => {
    const src = await compressionSource(`csrc-${type}-${cluster}.raw`, 6 * MiB);
    const path = join(dir, `comp-${type}-${cluster}.qcow2`);
    await qemuImg(
      'convert',
      '-c',
      '-f',
      'raw',
      '-O',
      'qcow2',
      '-o',
      `compression_type=${type},cluster_size=${cluster}`,
      src,
      path,
    );
    // Rewrite part of it in place: compressed and plain clusters side by side.
    await qemuIo(path, ['write -P 0x66 2M 100000', 'write -z 3M 64k']);
    await checkAgainstQemu(path, dir);
    const image = await openImage(path);
    const specific = image.describe?.().specific;
    assert.equal(specific?.['compression-type'], type);
    // Concurrent reads of many compressed clusters decompress in parallel and agree.
    const whole = Buffer.alloc(image.size);
    await image.read(whole, 0);
    const parts = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const b = Buffer.alloc(MiB + 333);
        await image.read(b, i * MiB + 77);
        return b;
      }),
    );
    parts.forEach((b, i) => {
      assert.ok(b.equals(whole.subarray(i * MiB + 77, i * MiB + 77 + b.length)));
    });
    await image.close();
  });
}

test('qcow2 extended L2 entries: subcluster writes', async () => {
  const path = await create('extl2.qcow2', 8 * MiB + 4096, 'extended_l2=on');
  await qemuIo(path, [
    'write -P 0x55 4k 2k', // within subcluster 2 (2 KiB subclusters)
    'write -P 0x56 63k 3k', // across a cluster boundary
    'write -z 66k 4k',
    'write -zu 128k 64k',
    'write -P 0x57 200k 4k',
    'discard 202k 2k',
    'write -P 0x58 1M 1M',
    'write -z 1M 6k',
    `write -P 0x59 ${8 * MiB + 3584} 512`,
  ]);
  const extents = await checkAgainstQemu(path, dir);
  assert.ok(
    extents.some((e) => e.zero && e.length < 65536),
    'has subcluster-sized runs',
  );
});

test('qcow2 extended L2 with 2 MiB clusters (64 KiB subclusters)', async () => {
  const path = await create('extl2-2m.qcow2', 8 * MiB, 'extended_l2=on,cluster_size=2M');
  await qemuIo(path, ['write -P 0x31 100k 20k', 'write -z 2M 64k', 'write -P 0x32 5M 300k']);
  await checkAgainstQemu(path, dir);
});

test('qcow2 internal snapshots: reads the active layer, lists them like qemu-img info', async () => {
  const path = await create('snap.qcow2', 4 * MiB);
  await qemuIo(path, ['write -P 0x10 0 1M']);
  await qemuImg('snapshot', '-c', 'first', path);
  await qemuIo(path, ['write -P 0x20 512k 1M', 'write -z 0 64k']);
  await qemuImg('snapshot', '-c', 'second snapshot', path);
  await qemuIo(path, ['discard 1M 64k']);
  await checkAgainstQemu(path, dir);
  const info = JSON.parse(await qemuImg('info', '--output=json', path));
  const image = await openImage(path);
  const snaps = image.describe?.().snapshots ?? [];
  assert.deepEqual(
    snaps.map((s) => ({
      id: s.id,
      name: s.name,
      'vm-state-size': s.vmStateSize,
      'date-sec': s.dateSec,
      'date-nsec': s.dateNsec,
      'vm-clock-nsec': s.vmClockNsec,
      icount: s.icount,
    })),
    info.snapshots.map((s: Record<string, unknown>) => ({
      id: s.id,
      name: s.name,
      'vm-state-size': s['vm-state-size'],
      'date-sec': s['date-sec'],
      'date-nsec': s['date-nsec'],
      'vm-clock-nsec': s['vm-clock-nsec'],
      icount: s.icount,
    })),
  );
  assert.equal(snaps.length, 2);
  await image.close();
});

test('qcow2 dirty image (lazy refcounts, writer killed) is readable and reported dirty', async () => {
  const path = await create('dirty.qcow2', 2 * MiB, 'lazy_refcounts=on');
  // qemu-io dies by SIGKILL after the write, leaving the dirty bit set.
  await assert.rejects(qemuIo(path, ['write -P 0x42 64k 128k', 'sigraise 9']));
  const info = JSON.parse(await qemuImg('info', '--output=json', path));
  assert.equal(info['dirty-flag'], true);
  await checkAgainstQemu(path, dir);
  const image = await openImage(path);
  const d = image.describe?.();
  assert.equal(d?.dirty, true);
  assert.equal(d?.specific?.['lazy-refcounts'], true);
  await image.close();
});

test('qcow2 corrupt-flagged image is readable (read-only) and reported corrupt', async () => {
  const path = await create('corrupt.qcow2', 2 * MiB);
  await qemuIo(path, ['write -P 0x42 0 100k']);
  await patch(path, 79, [0x02]);
  await checkAgainstQemu(path, dir);
  const image = await openImage(path);
  assert.equal(image.capabilities.write, false);
  assert.equal(image.describe?.().corrupt, true);
  assert.equal(image.describe?.().specific?.corrupt, true);
  await image.close();
});

test('qcow2 odd virtual size from the header (not a multiple of 512)', async () => {
  const path = await create('oddsize.qcow2', 2 * MiB);
  await qemuIo(path, ['write -P 0x42 0 2M']);
  // Virtual size 1000001: qemu rounds it up to 512 bytes, diskpipe keeps it exact.
  await patch(path, 24, be64(1_000_001));
  const image = await openImage(path);
  assert.equal(image.size, 1_000_001);
  const tail = new Uint8Array(65);
  await image.read(tail, 1_000_001 - 65);
  assert.deepEqual(tail, new Uint8Array(65).fill(0x42));
  await image.close();
  await checkAgainstQemu(path, dir);
});

for (const [mode, cluster, bits] of [
  ['metadata', 65536, 16],
  ['metadata', 2 * MiB, 16],
  ['metadata', 4096, 1],
  ['metadata', 65536, 64],
  ['falloc', 65536, 16],
] as const) {
  test(`qcow2 preallocation=${mode}, cluster ${cluster}, refcount bits ${bits}: host holes are zero`, async () => {
    const path = await create(
      `prealloc-${mode}-${cluster}-${bits}.qcow2`,
      12 * MiB,
      `preallocation=${mode},cluster_size=${cluster},refcount_bits=${bits}`,
    );
    await qemuIo(path, ['write -P 0x71 1M 100k', 'write -z 5M 64k', 'write -P 0x72 9437000 3000']);
    await checkAgainstQemu(path, dir);
  });
}

test('qcow2 empty image of size 0 and an all-unallocated image', async () => {
  const empty = await create('zero-size.qcow2', 0);
  const image = await openImage(empty);
  assert.equal(image.size, 0);
  await image.close();
  const blank = await create('blank.qcow2', 5 * MiB);
  await checkAgainstQemu(blank, dir, { expectData: false });
});

test('qcow2 describe() matches qemu-img info (format-specific, bitmaps, sizes)', async () => {
  const path = await create('info.qcow2', 3 * MiB, 'refcount_bits=64,lazy_refcounts=on');
  await qemuIo(path, ['write -P 1 0 64k']);
  await qemuImg('bitmap', '--add', path, 'b0');
  await qemuImg('bitmap', '--add', '-g', '128k', '--disable', path, 'b1');
  for (const p of [path, await create('info-ext.qcow2', MiB, 'extended_l2=on')]) {
    settleAllocation(p); // actual-size is compared
    const info = JSON.parse(await qemuImg('info', '--output=json', p));
    const image = await openImage(p);
    const d = image.describe!();
    assert.equal(d.virtualSize, info['virtual-size']);
    assert.equal(d.clusterSize, info['cluster-size']);
    assert.equal(d.dirty, info['dirty-flag']);
    assert.equal(d.actualSize, info['actual-size']);
    assert.deepEqual(d.specific, info['format-specific'].data);
    await image.close();
  }
});

/** A local file that logs every read (offset, length) the format makes. */
async function loggingSource(path: string) {
  const file = await LocalFile.open(path);
  const log: [number, number][] = [];
  const source: ByteSource = {
    name: file.name,
    path: file.path,
    get size() {
      return file.size;
    },
    read: (buf, offset) => {
      log.push([offset, buf.length]);
      return file.read(buf, offset);
    },
    close: () => file.close(),
  };
  return { source, log };
}

test('qcow2 reads coalesce: contiguous clusters are one host read', async () => {
  const path = await create('coalesce.qcow2', 8 * MiB);
  await qemuIo(path, ['write -P 0x21 0 4M']); // allocated in order: host-contiguous
  const { source, log } = await loggingSource(path);
  const image = await openImageOn(source);
  log.length = 0;
  const buf = new Uint8Array(3 * MiB);
  await image.read(buf, 65536 + 100);
  assert.ok(buf.every((b) => b === 0x21));
  const big = log.filter(([, len]) => len > 65536);
  assert.equal(big.length, 1, `one large data read, got ${JSON.stringify(log)}`);
  assert.equal(big[0]?.[1], 3 * MiB);
  assert.ok(log.length <= 2, 'one data read plus at most one L2 table read');
  await image.close();
});

test('qcow2 compressed neighbours are fetched together', async () => {
  const src = await create('cgroup-src.qcow2', 4 * MiB);
  await qemuIo(src, ['write -P 0x22 0 4M']);
  const path = join(dir, 'cgroup.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', src, path);
  const { source, log } = await loggingSource(path);
  const image = await openImageOn(source);
  log.length = 0;
  const buf = new Uint8Array(4 * MiB);
  await image.read(buf, 0);
  assert.ok(buf.every((b) => b === 0x22));
  // 64 compressed clusters: one L2 table read and one read for the compressed run.
  assert.ok(log.length <= 2, `few host reads, got ${log.length}`);
  await image.close();
});

test('qcow2 host holes in a densely allocated image stay data, as in qemu-img map', async () => {
  // qemu only asks the host file about holes when the image looks metadata-preallocated.
  const path = await create('dense-hole.qcow2', 8 * MiB);
  await qemuIo(path, ['write -P 0x44 0 4M']);
  const l1 = readFileSync(path).readBigUInt64BE(40);
  const l2 = readFileSync(path).readBigUInt64BE(Number(l1)) & 0x00fffffffffffe00n;
  const host = Number(readFileSync(path).readBigUInt64BE(Number(l2)) & 0x00fffffffffffe00n);
  await run('fallocate', ['-p', '-o', String(host + 65536), '-l', '8192', path]);
  const extents = await checkAgainstQemu(path, dir);
  assert.ok(!extents[0]?.zero && extents[0]!.length >= 4 * MiB);
});
