import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CopyPassHash } from '../../src/cache/copy-pass-hash.js';
import { storeImage } from '../../src/cache/store-raw.js';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import {
  type BlockDigester,
  type BlockHasher,
  HashPool,
  type HashResult,
  InlineHasher,
} from '../../src/ops/checksum/index.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';
import {
  materialize,
  prng,
  referenceBlkhash,
  totalLength,
  VECTORS,
} from '../ops/checksum-vectors.js';

const dir = tempDir('diskpipe-copyhash-');

test('copy pass hash: the BLKHASH vectors, fed in random order and random pieces', async () => {
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
    assert.equal(await hash.digest(), v.digest, v.name);
  }
});

test('copy pass hash: dataShared hashes shared memory in place, any cut, mixed with data()', async () => {
  const rand = prng(5);
  const hasher = new HashPool(2);
  try {
    for (const v of VECTORS) {
      if ((v.algorithm ?? 'sha256') !== 'sha256') continue;
      const size = totalLength(v.segments);
      if (size > 64 * 1024 * 1024) continue;
      const bytes = materialize(v.segments);
      const hash = new CopyPassHash(size, { hasher });
      const bs = hash.blockSize;
      const jobs: Promise<void>[] = [];
      for (let offset = 0; offset < size; ) {
        const n = Math.min(size - offset, 1 + rand(300_000));
        const piece = bytes.subarray(offset, offset + n);
        if (rand(4) === 0) hash.data(piece, offset);
        else {
          // As the host-order copy places it: byte 0 of the shared buffer is a block start.
          const at = offset % bs;
          const shared = new Uint8Array(new SharedArrayBuffer(at + n)).subarray(at);
          shared.set(piece);
          const job = hash.dataShared(shared, offset);
          if (job) jobs.push(job);
        }
        offset += n;
      }
      await Promise.all(jobs);
      assert.equal(await hash.digest(), v.digest, v.name);
    }
  } finally {
    await hasher.close();
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

/** A hasher whose jobs finish only when the test says so; it counts what it was given. */
class HeldHasher implements BlockHasher {
  readonly threads = 1;
  private readonly inline = new InlineHasher();
  private held: (() => void)[] = [];
  jobs = 0;
  bytes = 0;
  busy = 0;
  maxBusy = 0;

  async hash(digester: BlockDigester, buffer: ArrayBuffer, length: number): Promise<HashResult> {
    this.jobs++;
    this.bytes += length;
    this.maxBusy = Math.max(this.maxBusy, ++this.busy);
    await new Promise<void>((resolve) => this.held.push(resolve));
    this.busy--;
    return this.inline.hash(digester, buffer, length);
  }

  release(): void {
    for (const r of this.held.splice(0)) r();
  }

  async close(): Promise<void> {}
}

test('copy pass hash: data blocks go to the hasher, zero ranges never; room() bounds what is in flight', async () => {
  const K = 65536;
  const size = 64 * 1024 * 1024 + 1000; // a short last block too
  const hasher = new HeldHasher();
  const hash = new CopyPassHash(size, { hasher, batchBytes: 4 * K, inFlight: 3 });
  const bytes = Buffer.alloc(size);
  const rand = prng(7);
  // Data in the first 16 MiB (some of it zero bytes), a zero range after it, data at the end.
  for (let i = 0; i < 16 * 1024 * 1024; i += 4096)
    if (rand(3) > 0) bytes.fill(1 + rand(255), i, i + 4096);
  bytes.fill(0x77, size - 3 * K);
  hash.data(bytes.subarray(0, 16 * 1024 * 1024), 0);
  hash.zero(16 * 1024 * 1024, size - 16 * 1024 * 1024 - 3 * K);
  // A caller that can wait is held back once 3 batches are in flight.
  assert.ok(hash.room() instanceof Promise);
  hash.data(bytes.subarray(size - 3 * K), size - 3 * K);
  // A caller that cannot wait is bounded too: beyond twice the limit, batches are hashed here.
  assert.equal(hasher.maxBusy, 6);
  const digest = hash.digest();
  hasher.release();
  const again = setInterval(() => hasher.release(), 1);
  try {
    assert.equal(await digest, referenceBlkhash(bytes));
  } finally {
    clearInterval(again);
  }
  // The zero range was never handed over; the full blocks of data were.
  assert.equal(hasher.bytes % K, 0);
  assert.ok(hasher.bytes <= 16 * 1024 * 1024 + 2 * K, `${hasher.bytes} bytes handed over`);
  assert.ok(hasher.jobs >= 6);
});

test('copy pass hash: storeImage hashes a qcow2 on the worker pool, not on the calling thread', async () => {
  const src = join(dir, 'pool.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '64M');
  await qemuIo(src, ['write -P 0x5a 1M 3M', 'write -z 8M 1M', 'write -P 0xa5 40M 2M']);
  const poolHash = HashPool.prototype.hash;
  let pooled = 0;
  HashPool.prototype.hash = function (this: HashPool, d, buffer, length) {
    pooled += length;
    return poolHash.call(this, d, buffer, length);
  };
  const image = await openImage(src);
  try {
    const stored = await storeImage(image, join(dir, 'pool.raw'));
    assert.equal(stored.contentDigest, diskpipe(['checksum', src]).stdout.split(' ')[0]);
  } finally {
    HashPool.prototype.hash = poolHash;
    await image.close();
  }
  assert.equal(pooled, 5 * 1024 * 1024, 'the 5 MiB of data went through the pool');
});

test('copy pass hash: hashes on half the cores by default (the decode pool and the copy use the rest)', () => {
  // A pull on 2 cores booted 2 hash workers beside 2 decoders and the download's digest
  // worker; one hash worker keeps up (~0.1 s of CPU and ~5 MiB less per pull).
  const hasher = (new CopyPassHash(4096) as unknown as { hasher: BlockHasher }).hasher;
  assert.equal(hasher.threads, Math.max(1, Math.floor(availableParallelism() / 2)));
});
