import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CopyPassHash } from '../../src/cache/copy-pass-hash.js';
import { storeImage } from '../../src/cache/store-raw.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';
import { materialize, prng, totalLength, VECTORS } from '../ops/checksum-vectors.js';

const dir = tempDir('diskpipe-copyhash-');

test('copy pass hash: the BLKHASH vectors, fed in random order and random pieces', () => {
  const rand = prng(12);
  for (const v of VECTORS) {
    if ((v.algorithm ?? 'sha256') !== 'sha256') continue;
    const size = totalLength(v.segments);
    if (size > 64 * 1024 * 1024) continue; // the GiB vectors are covered by checksum's tests
    // Pieces as the copy engine makes them: data with bytes, zero ranges without.
    const pieces: { offset: number; length: number; zero: boolean }[] = [];
    let offset = 0;
    for (const s of v.segments) {
      for (let done = 0; done < s.length; ) {
        const n = Math.min(s.length - done, 1 + rand(100_000));
        pieces.push({ offset: offset + done, length: n, zero: s.zero === true });
        done += n;
      }
      offset += s.length;
    }
    for (let i = pieces.length - 1; i > 0; i--) {
      const j = rand(i + 1);
      [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
    }
    const bytes = materialize(v.segments);
    const hash = new CopyPassHash(size);
    for (const p of pieces) {
      if (p.zero) hash.zero(p.offset, p.length);
      else hash.data(bytes.subarray(p.offset, p.offset + p.length), p.offset);
    }
    assert.equal(hash.digest(), v.digest, v.name);
  }
});

test('copy pass hash: storeImage gives checksum of the result and never reads it back', async () => {
  // qcow2 with 4 KiB clusters (extents cut blkhash blocks anywhere), compressed clusters,
  // zero pages inside data, and a raw source whose size is not a multiple of the block size.
  const small = join(dir, 'small.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', small, '10M');
  await qemuIo(small, [
    'write -P 0x11 4096 8192',
    'write -P 0x22 65536 4096',
    'write -z 69632 4096',
    'write -P 0x33 200000 70000',
    'write -P 0x44 9000k 1000k',
  ]);
  const compressed = join(dir, 'compressed.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', small, compressed);
  const odd = join(dir, 'odd.raw');
  const oddBytes = Buffer.alloc(3 * 65536 + 777);
  oddBytes.fill(0x55, 70_000, 140_000);
  oddBytes.fill(0x66, oddBytes.length - 500);
  writeFileSync(odd, oddBytes);

  for (const src of [small, compressed, odd]) {
    const out = join(dir, `out-${src.split('/').at(-1)}.raw`);
    const image = await openImage(src);
    let readsOfOutput = 0;
    const read = LocalFile.prototype.read;
    LocalFile.prototype.read = function (this: LocalFile, buf: Uint8Array, offset: number) {
      if (this.path === out) readsOfOutput++;
      return read.call(this, buf, offset);
    };
    let stored: Awaited<ReturnType<typeof storeImage>>;
    try {
      stored = await storeImage(image, out);
    } finally {
      LocalFile.prototype.read = read;
      await image.close();
    }
    assert.equal(readsOfOutput, 0, `${src}: the converted file was read again`);
    const peer = diskpipe(['checksum', out]);
    assert.equal(peer.status, 0, peer.stderr);
    assert.equal(stored.contentDigest, peer.stdout.split(' ')[0], src);
    assert.equal(diskpipe(['checksum', src]).stdout.split(' ')[0], stored.contentDigest);
    assert.equal((await qemuImg('compare', src, out)).includes('identical'), true);
  }
});
