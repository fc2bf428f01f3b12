/**
 * Hostile and unsupported qcow2 images: real images from qemu-img with bytes patched. Every
 * case must end in a DiskpipeError with a clear message: no crash, hang or huge allocation.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { compress } from '@mongodb-js/zstd';
import { DiskpipeError } from '../../src/errors.js';
import { decompressCluster, zstdFrameLength } from '../../src/formats/qcow2/compressed.js';
import { TableCache } from '../../src/formats/qcow2/l2-cache.js';
import type { Image } from '../../src/image/types.js';
import { openImage } from '../../src/open.js';
import { readAll } from '../helpers/extents.js';
import { writeLuks1 } from '../helpers/luks.js';
import { qemuImg, qemuIo, run, tempDir } from '../helpers/peers.js';
import { be32, be64, patch } from '../helpers/qemu-compare.js';

const dir = tempDir('diskpipe-qcow2-hostile-');
const MiB = 1024 * 1024;
let n = 0;

/** A fresh copy of a small real image with data, to be patched. */
async function sample(opts = ''): Promise<string> {
  const path = join(dir, `s${n++}.qcow2`);
  await qemuImg('create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), path, '4M');
  await qemuIo(path, ['write -P 0x5a 0 128k', 'write -P 0x5b 1M 64k']);
  return path;
}

async function compressedSample(type: 'zlib' | 'zstd'): Promise<string> {
  const src = await sample();
  const path = join(dir, `c${n++}.qcow2`);
  await qemuImg('convert', '-c', '-O', 'qcow2', '-o', `compression_type=${type}`, src, path);
  return path;
}

/** Runs open + full read + extents + mapping; returns the first error. */
async function exercise(path: string): Promise<unknown> {
  let image: Image | undefined;
  try {
    image = await openImage(path);
    await readAll(image);
    for await (const _ of image.extents()) {
    }
    if (image.mapping)
      for await (const _ of image.mapping(0, image.size)) {
      }
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await image?.close();
  }
}

async function rejects(path: string, code: string, message: RegExp): Promise<void> {
  const err = await exercise(path);
  assert.ok(err instanceof DiskpipeError, `expected a DiskpipeError, got ${String(err)}`);
  if (process.env.SHOW_ERRORS) console.log(err.message);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
}

function u64At(path: string, offset: number): number {
  const b = readFileSync(path);
  return Number(b.readBigUInt64BE(offset));
}

/** Host offset of the first L2 table and of its first entry. */
function firstL2(path: string): { l2: number; entry: bigint } {
  const b = readFileSync(path);
  const l1 = Number(b.readBigUInt64BE(40));
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  return { l2, entry: b.readBigUInt64BE(l2) };
}

test('truncated files', async () => {
  const tiny = await sample();
  truncateSync(tiny, 50);
  await rejects(tiny, 'CORRUPT', /truncated/);

  const midL1 = await sample();
  truncateSync(midL1, u64At(midL1, 40) + 4);
  await rejects(midL1, 'CORRUPT', /L1 table .* outside the file/);

  // Metadata intact, data clusters gone: reading data names the guest offset.
  const noData = await sample();
  truncateSync(noData, firstL2(noData).l2 + 65536);
  await rejects(noData, 'CORRUPT', /guest offset 0.*past the end/);

  // The L2 table itself cut short.
  const midL2 = await sample();
  truncateSync(midL2, firstL2(midL2).l2 + 100);
  await rejects(midL2, 'CORRUPT', /guest offset 0: L2 table at \d+ lies past the end/);
});

test('table offsets and sizes in the header', async () => {
  const l1Far = await sample();
  await patch(l1Far, 40, be64(2 ** 40));
  await rejects(l1Far, 'CORRUPT', /L1 table .* outside the file/);

  // These said 'L1 table at 0 (8 bytes) lies outside the file (N bytes)'.
  for (const [field, what] of [
    [40, 'L1 table'],
    [48, 'refcount table'],
  ] as const) {
    const onHeader = await sample();
    await patch(onHeader, field, be64(0));
    await rejects(
      onHeader,
      'CORRUPT',
      new RegExp(`^\\S+: ${what} at offset 0 overlaps the qcow2 header$`),
    );
  }

  const l1Unaligned = await sample();
  await patch(l1Unaligned, 40, be64(u64At(l1Unaligned, 40) + 8));
  await rejects(l1Unaligned, 'CORRUPT', /L1 table offset \d+ is not cluster aligned/);

  const l1Huge = await sample();
  await patch(l1Huge, 36, be32(0xffffffff));
  await rejects(l1Huge, 'CORRUPT', /L1 table size 4294967295 is too large/);

  const l1Small = await sample();
  await patch(l1Small, 24, be64(2 ** 40)); // 1 TiB virtual size, 1 L1 entry
  await rejects(l1Small, 'CORRUPT', /too few for the virtual size/);

  const sizeHuge = await sample();
  await patch(sizeHuge, 24, be64(2n ** 60n));
  await rejects(sizeHuge, 'CORRUPT', /virtual size .* too large/);

  const refFar = await sample();
  await patch(refFar, 48, be64(2 ** 45));
  await rejects(refFar, 'CORRUPT', /refcount table .* outside the file/);

  const snaps = await sample();
  await patch(snaps, 60, be32(0xffffffff));
  await rejects(snaps, 'CORRUPT', /too many snapshots/);

  const snapFar = await sample();
  await patch(snapFar, 60, be32(3));
  await patch(snapFar, 64, be64(2 ** 30));
  await rejects(snapFar, 'CORRUPT', /snapshot table .* outside the file/);

  const hdrLen = await sample();
  await patch(hdrLen, 100, be32(1 << 20));
  await rejects(hdrLen, 'CORRUPT', /header length .* exceeds the first cluster/);

  const refOrder = await sample();
  await patch(refOrder, 96, be32(7));
  await rejects(refOrder, 'CORRUPT', /refcount order 7/);
});

test('cluster_bits out of range', async () => {
  const small = await sample();
  await patch(small, 20, be32(8));
  await rejects(small, 'CORRUPT', /cluster_bits 8/);
  const big = await sample();
  await patch(big, 20, be32(30));
  await rejects(big, 'UNSUPPORTED', /cluster size 2\^30 is not supported/);
});

test('backing file name: too long, or outside the header', async () => {
  const long = await sample();
  await patch(long, 8, be64(512));
  await patch(long, 16, be32(5000));
  await rejects(long, 'CORRUPT', /backing file name is too long/);
  const far = await sample();
  await patch(far, 8, be64(2 ** 20));
  await patch(far, 16, be32(10));
  await rejects(far, 'CORRUPT', /backing file name offset .* outside the header/);
});

test('header extension overflowing the first cluster', async () => {
  const path = await sample();
  const head = readFileSync(path).subarray(0, 65536);
  const at = head.indexOf(Buffer.from([0x68, 0x03, 0xf8, 0x57])); // feature name table
  assert.ok(at > 0);
  await patch(path, at + 4, be32(0x7fffffff));
  await rejects(path, 'CORRUPT', /header extension 0x6803f857 .* overflows/);
});

test('L2 entries: unaligned, past the end, invalid subcluster bitmap, zero flag in v2', async () => {
  const unaligned = await sample();
  const u = firstL2(unaligned);
  await patch(unaligned, u.l2, be64(u.entry + 512n));
  await rejects(unaligned, 'CORRUPT', /guest offset 0: cluster offset \d+ is not cluster aligned/);

  const far = await sample();
  const f = firstL2(far);
  await patch(far, f.l2 + 8, be64((1n << 63n) | (1n << 40n))); // 2nd cluster at 1 TiB
  await rejects(far, 'CORRUPT', /guest offset 65536 .* past the end/);

  const ext = await sample('extended_l2=on');
  const e = firstL2(ext);
  await patch(ext, e.l2 + 8, be64(0x0000000100000001n)); // subcluster 0 both zero and allocated
  await rejects(ext, 'CORRUPT', /guest offset 0: invalid subcluster allocation bitmap/);

  const v2 = await sample('compat=0.10');
  const z = firstL2(v2);
  await patch(v2, z.l2 + 16, be64(1n)); // zero flag on the 3rd cluster
  await rejects(v2, 'CORRUPT', /guest offset 131072: zero cluster in a v2 image/);
});

test('compressed clusters: past the end of the file, garbage data', async () => {
  for (const type of ['zlib', 'zstd'] as const) {
    const far = await compressedSample(type);
    const f = firstL2(far);
    const flagsAndSectors = f.entry & ~((1n << 54n) - 1n);
    await patch(far, f.l2, be64(flagsAndSectors | (1n << 40n)));
    await rejects(far, 'CORRUPT', /guest offset 0: compressed cluster at \d+ lies past the end/);

    const tail = await compressedSample(type);
    const t = firstL2(tail);
    const size = statSync(tail).size;
    // Starts inside the file, but its sectors run well past the end.
    const entry = (1n << 62n) | (100n << 54n) | BigInt(size - 10);
    await patch(tail, t.l2, be64(entry));
    await rejects(tail, 'CORRUPT', /guest offset 0 \(\d+ bytes at \d+\) runs past the end/);

    const garbage = await compressedSample(type);
    const g = firstL2(garbage);
    const host = Number(g.entry & ((1n << 54n) - 1n));
    await patch(garbage, host, Buffer.alloc(8, 0xff));
    await rejects(
      garbage,
      'CORRUPT',
      new RegExp(`guest offset 0: bad ${type === 'zlib' ? 'deflate' : 'zstd'}`),
    );
  }
});

test('decompression is bounded to one cluster', async () => {
  const bomb = deflateRawSync(Buffer.alloc(16 * MiB));
  await assert.rejects(decompressCluster('zlib', bomb, 65536, 'bomb'), { code: 'CORRUPT' });
  const short = deflateRawSync(Buffer.alloc(1000));
  await assert.rejects(decompressCluster('zlib', short, 65536, 'short'), /1000 bytes, not 65536/);

  // A zstd frame of RLE blocks: 4 bytes each, 128 KiB of output each.
  const blocks: number[] = [];
  for (let i = 0; i < 100; i++) {
    const hdr = ((128 * 1024) << 3) | (1 << 1) | (i === 99 ? 1 : 0);
    blocks.push(hdr & 0xff, (hdr >> 8) & 0xff, (hdr >> 16) & 0xff, 0);
  }
  const rle = Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, ...blocks]);
  assert.throws(() => zstdFrameLength(rle, 65536, 'rle'), /more than a cluster/);
  const liar = Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd, 0x80, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0]);
  assert.throws(() => zstdFrameLength(liar, 65536, 'fcs'), /content size/);
  assert.throws(() => zstdFrameLength(rle.subarray(0, 20), 65536 * 200, 'cut'), /truncated/);

  // A real frame plus qemu-style sector padding: the exact frame length is found.
  const data = Buffer.alloc(65536, 7);
  data.write('diskpipe', 1000);
  const frame = await compress(data, 3);
  const padded = new Uint8Array(frame.length + 300).fill(0xaa);
  padded.set(frame);
  assert.equal(zstdFrameLength(padded, 65536, 'real'), frame.length);
  assert.deepEqual(Buffer.from(await decompressCluster('zstd', padded, 65536, 'real')), data);
});

test('unknown incompatible feature bits are refused, named from the feature table', async () => {
  const unknown = await sample();
  await patch(unknown, 79, [0x20]); // bit 5
  await rejects(unknown, 'UNSUPPORTED', /incompatible feature\(s\): unknown bit 5$/);

  const named = await sample();
  const head = readFileSync(named).subarray(0, 65536);
  const table = head.indexOf(Buffer.from([0x68, 0x03, 0xf8, 0x57])) + 8;
  // Rename the table's entry for incompatible bit 4 to bit 9 and set that bit.
  let entry = table;
  while (!(head[entry] === 0 && head[entry + 1] === 4) && entry < table + 48 * 16) entry += 48;
  assert.ok(entry < table + 48 * 16, 'feature table names incompatible bit 4');
  const name = Buffer.alloc(46);
  name.write('time travel');
  await patch(named, entry, [0, 9, ...name]);
  await patch(named, 72, be64(1 << 9));
  await rejects(named, 'UNSUPPORTED', /'time travel' \(bit 9\)/);
});

/**
 * Turns a qcow2 v3 image into a LUKS-encrypted one as qemu lays it out: crypt_method 2 and a
 * full disk encryption header extension (placed first) pointing at a LUKS1 header appended
 * at the next cluster boundary.
 */
async function withLuksHeader(path: string): Promise<string> {
  const file = readFileSync(path);
  const clusterSize = 2 ** file.readUInt32BE(20);
  const headerLength = file.readUInt32BE(100);
  const luks = readFileSync(writeLuks1(join(dir, `luks${n++}.raw`), 0));
  const at = Math.ceil(file.length / clusterSize) * clusterSize;
  const ext = Buffer.alloc(24);
  ext.writeUInt32BE(0x0537be77, 0);
  ext.writeUInt32BE(16, 4);
  ext.writeBigUInt64BE(BigInt(at), 8);
  ext.writeBigUInt64BE(BigInt(luks.length), 16);
  // The other extensions move up by 24 bytes; the first cluster has room for them.
  const rest = file.subarray(headerLength, clusterSize - ext.length);
  const head = Buffer.concat([file.subarray(0, headerLength), ext, rest]);
  head.writeUInt32BE(2, 32);
  const out = Buffer.alloc(at + luks.length);
  file.copy(out);
  head.copy(out);
  luks.copy(out, at);
  writeFileSync(path, out);
  return path;
}

test('encryption is refused: AES, LUKS, a stray encryption header', async () => {
  const secret = ['--object', 'secret,id=sec0,data=diskpipe'];
  const aes = join(dir, 'aes.qcow2');
  await qemuImg(
    'create',
    '-q',
    ...secret,
    '-f',
    'qcow2',
    '-o',
    'encrypt.format=aes,encrypt.key-secret=sec0',
    aes,
    '1M',
  );
  await rejects(aes, 'UNSUPPORTED', /AES-encrypted qcow2 images/);

  // qemu-img would benchmark PBKDF2 for seconds: mark a real image as LUKS the way qemu does
  // (crypt_method 2, a full disk encryption header extension, a LUKS header in the file).
  const luks = await withLuksHeader(await sample());
  // qemu reads the same layout as a LUKS-encrypted qcow2 (its info needs no passphrase).
  assert.match(await qemuImg('info', '--output=json', luks), /"format": "luks"/);
  await rejects(luks, 'UNSUPPORTED', /LUKS-encrypted qcow2 images/);

  const stray = await sample();
  const head = readFileSync(stray).subarray(0, 65536);
  const at = head.indexOf(Buffer.from([0x68, 0x03, 0xf8, 0x57]));
  await patch(stray, at, be32(0x0537be77));
  await rejects(stray, 'UNSUPPORTED', /full disk encryption header/);
});

test('qcow version 1 and unknown versions are refused by name', async () => {
  const v1 = join(dir, 'old.qcow');
  await qemuImg('create', '-q', '-f', 'qcow', v1, '1M');
  await rejects(v1, 'UNSUPPORTED', /qcow version 1 is not supported/);
  const v4 = await sample();
  await patch(v4, 4, be32(4));
  await rejects(v4, 'UNSUPPORTED', /qcow2 version 4 is not supported/);
});

test('compression type field and feature bit must agree', async () => {
  const noType = await sample();
  await patch(noType, 79, [0x08]);
  await rejects(noType, 'CORRUPT', /no compression type/);
  const zstd = await compressedSample('zstd');
  await patch(zstd, 104, [7]);
  await rejects(zstd, 'UNSUPPORTED', /unknown qcow2 compression type 7/);
});

test('-f qcow2 on a file that is not qcow2 is an error, not a raw read', async () => {
  // -f qcow2 on a non-qcow2 file is an error, not a raw read.
  const raw = join(dir, 'plain.raw');
  await run('dd', ['if=/dev/zero', `of=${raw}`, 'bs=1k', 'count=64']);
  await assert.rejects(openImage(raw, { format: 'qcow2' }), { code: 'CORRUPT' });
});

test('the table cache is bounded and shares loads', async () => {
  let loads = 0;
  const cache = new TableCache<number>(3, async (k) => {
    loads++;
    return k * 2;
  });
  assert.deepEqual(await Promise.all([cache.get(1), cache.get(1), cache.get(2)]), [2, 2, 4]);
  assert.equal(loads, 2);
  await cache.get(3);
  await cache.get(4); // evicts 1 (least recently used)
  await cache.get(2);
  assert.equal(loads, 4);
  await cache.get(1);
  assert.equal(loads, 5);
  const failing = new TableCache<number>(2, async () => {
    throw new Error('io');
  });
  await assert.rejects(failing.get(1));
  await assert.rejects(failing.get(1)); // a failure is not cached as a value
});
