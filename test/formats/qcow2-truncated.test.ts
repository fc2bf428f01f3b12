/**
 * A truncated compressed qcow2 (`qemu-img convert -c`, then `truncate`) names the first
 * cluster that cannot be read: the one the truncation cuts through. It used to name the next
 * one (wholly past the end), which the extents walk rejected before the cut one was read.
 * (qemu-img reads the cut cluster's missing sectors as zeroes and names the next one too.)
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, openSync, readSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptImageError, openImage } from '../../src/index.js';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-qcow2-truncated-');
const CLUSTER = 65536;

function u64(fd: number, at: number): bigint {
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, at);
  return b.readBigUInt64BE(0);
}

/** Host offset and sector-rounded size of each compressed cluster (64 KiB clusters, one L2). */
function compressedClusters(path: string, count: number): { host: number; size: number }[] {
  const fd = openSync(path, 'r');
  try {
    const l1 = Number(u64(fd, 40));
    const l2 = Number(u64(fd, l1) & 0x00fffffffffffe00n);
    const out: { host: number; size: number }[] = [];
    for (let i = 0; i < count; i++) {
      const e = u64(fd, l2 + 8 * i);
      assert.ok(e & (1n << 62n), `cluster ${i} is compressed`);
      // cluster_bits 16: a 54-bit offset, then the count of additional sectors.
      const host = Number(e & ((1n << 54n) - 1n));
      const sectors = Number((e >> 54n) & 0xffn) + 1;
      out.push({ host, size: sectors * 512 - (host % 512) });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

// 2 MiB of base64 text: every cluster compresses, so qemu-img stores them all compressed.
const raw = join(dir, 'text.raw');
writeFileSync(raw, randomBytes(1.5 * 1024 * 1024).toString('base64'));
const packed = join(dir, 'text.qcow2');
await qemuImg('convert', '-c', '-O', 'qcow2', raw, packed);
const clusters = compressedClusters(packed, 32);

test('a truncation inside compressed cluster N names cluster N (convert, checksum, compare, read)', async () => {
  for (const n of [0, 13, 30]) {
    const cut = clusters[n]!;
    const path = join(dir, `cut-${n}.qcow2`);
    copyFileSync(packed, path);
    truncateSync(path, cut.host + 1000); // a cut deep inside cluster n's compressed bytes
    const first = new RegExp(`guest offset ${n * CLUSTER}\\b`);
    for (const args of [
      ['convert', path, join(dir, 'out.raw')],
      ['checksum', path],
      ['compare', path, raw],
    ]) {
      const r = diskpipe(args);
      assert.equal(r.status, 2, `${args[0]} cut in ${n}: ${r.stderr}`);
      assert.match(r.stderr, first, `${args[0]} cut in ${n}`);
    }
    const image = await openImage(path);
    try {
      await assert.rejects(image.read(new Uint8Array(CLUSTER), n * CLUSTER), (e: Error) => {
        assert.ok(e instanceof CorruptImageError);
        assert.match(e.message, first);
        return true;
      });
    } finally {
      await image.close();
    }
  }
});

test('the whole image reads as its source (the check rejects only what the file lacks)', () => {
  const r = diskpipe(['compare', packed, raw]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Images are identical/);
});
