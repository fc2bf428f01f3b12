import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { CorruptImageError } from '../../src/errors.js';
import type { Extent, Image } from '../../src/image/types.js';
import { BlkHash, BlockDigester } from '../../src/ops/checksum/blkhash.js';
import { checksumImage, checksumStream } from '../../src/ops/checksum/checksum.js';
import { OrderedBlkHash } from '../../src/ops/checksum/ordered.js';
import {
  type BlockHasher,
  HashPool,
  type HashResult,
  InlineHasher,
} from '../../src/ops/checksum/pool.js';
import { type Piece, PieceImage } from './checksum-images.js';
import {
  materialize,
  prng,
  referenceBlkhash,
  type Segment,
  totalLength,
  VECTORS,
  vector,
  Z_SHA256_64K,
} from './checksum-vectors.js';

const MiB = 1024 * 1024;
const pool = new HashPool(2);
after(() => pool.close());

/** Vectors small enough to materialize as data. */
const small = VECTORS.filter((v) => totalLength(v.segments) <= 4 * MiB);

/** Feeds segments to a BlkHash: data via update() in pieces of `split()` bytes, zero ranges via zero(). */
function feed(h: BlkHash, segments: Segment[], split: () => number): void {
  const chunk = Buffer.alloc(MiB);
  for (const s of segments) {
    if (s.zero) {
      h.zero(s.length);
      continue;
    }
    chunk.fill(s.byte);
    for (let left = s.length; left > 0; ) {
      const n = Math.min(left, Math.max(1, split()), chunk.length);
      h.update(chunk.subarray(0, n));
      left -= n;
    }
  }
}

describe('BlkHash: test vectors', () => {
  for (const v of VECTORS) {
    test(v.name, () => {
      const h = new BlkHash({ digest: v.algorithm ?? 'sha256' });
      feed(h, v.segments, () => MiB);
      assert.equal(h.digest('hex'), v.digest);
      assert.equal(h.length, totalLength(v.segments));
    });
  }

  test('Z for sha256 / 64 KiB', () => {
    assert.equal(new BlockDigester('sha256', 65536).zeroDigest.toString('hex'), Z_SHA256_64K);
  });

  test('the reference transcription agrees with the vectors it can materialize', () => {
    for (const v of small) {
      assert.equal(referenceBlkhash(materialize(v.segments), v.algorithm), v.digest, v.name);
    }
  });
});

describe('BlkHash: the split never changes the digest', () => {
  const patterns: [string, (r: (n: number) => number) => () => number][] = [
    ['one byte', () => () => 1],
    ['4095 bytes', () => () => 4095],
    ['one block', () => () => 65536],
    ['block + 1', () => () => 65537],
    ['random 1..200000', (r) => () => 1 + r(200000)],
  ];
  for (const [name, make] of patterns) {
    test(name, () => {
      for (const v of small) {
        if (name === 'one byte' && totalLength(v.segments) > 300000) continue;
        const h = new BlkHash({ digest: v.algorithm ?? 'sha256' });
        feed(h, v.segments, make(prng(7)));
        assert.equal(h.digest('hex'), v.digest, v.name);
      }
    });
  }

  test('zero ranges split anywhere, mixed with zero data', () => {
    const r = prng(11);
    for (let round = 0; round < 50; round++) {
      const segs: Segment[] = [];
      for (let i = 0; i < 8; i++) {
        const length = 1 + r(3 * 4096);
        segs.push(r(3) === 0 ? { byte: r(256), length } : { byte: 0, length, zero: r(2) === 0 });
      }
      const h = new BlkHash({ blockSize: 4096 });
      feed(h, segs, () => 1 + r(9000));
      assert.equal(h.digest('hex'), referenceBlkhash(materialize(segs), 'sha256', 4096));
    }
  });

  test('other digests and block sizes match the reference', () => {
    const data = Buffer.concat([randomBytes(300000), Buffer.alloc(70000), randomBytes(1234)]);
    for (const alg of ['sha1', 'sha512', 'sha3-256', 'blake2b512', 'SHA384']) {
      for (const bs of [512, 4096, 65536, 1 << 20]) {
        const h = new BlkHash({ digest: alg, blockSize: bs });
        h.update(data.subarray(0, 1000)).update(data.subarray(1000));
        assert.equal(
          h.digest('hex'),
          referenceBlkhash(data, alg.toLowerCase(), bs),
          `${alg}/${bs}`,
        );
      }
    }
  });

  test('all-zero blocks found in data are not hashed; a short zero tail is', () => {
    const h = new BlkHash();
    h.update(Buffer.alloc(4 * 65536 + 100));
    assert.equal(h.digest('hex'), referenceBlkhash(Buffer.alloc(4 * 65536 + 100)));
    assert.equal(h.hashedBytes, 100);
  });
});

describe('validation', () => {
  test('unknown digest, bad block sizes, reuse after digest', () => {
    assert.throws(() => new BlkHash({ digest: 'nope' }), {
      code: 'USAGE',
      message: /unknown digest/,
    });
    for (const bs of [0, -65536, 1000, 65535, 256, 2 ** 27, 1.5, Number.NaN]) {
      assert.throws(() => new BlkHash({ blockSize: bs }), { code: 'USAGE' }, String(bs));
    }
    const h = new BlkHash();
    assert.throws(() => h.zero(-1), { code: 'USAGE' });
    assert.throws(() => h.zero(1.5), { code: 'USAGE' });
    h.digest();
    assert.throws(() => h.update(Buffer.alloc(1)), { code: 'USAGE' });
    assert.throws(() => h.digest(), { code: 'USAGE' });
  });

  test('checksum options are checked', async () => {
    const img = new PieceImage([{ length: 10, byte: 1 }]);
    await assert.rejects(checksumImage(img, { windowSize: 0 }), { code: 'USAGE' });
    await assert.rejects(checksumImage(img, { windowSize: 2 ** 40 }), { code: 'USAGE' });
    await assert.rejects(checksumImage(img, { inFlight: 0 }), { code: 'USAGE' });
    await assert.rejects(checksumImage(img, { threads: -1 }), { code: 'USAGE' });
    await assert.rejects(checksumImage(img, { digest: 'md17' }), { code: 'USAGE' });
  });
});

/** Builds the vector as an image: zero ranges are zero extents; data holds the rest. */
function vectorImage(segments: Segment[], cuts: number[] = []): PieceImage {
  return new PieceImage(
    segments.map((s) => ({ length: s.length, byte: s.byte, zero: s.zero === true })),
    cuts,
  );
}

describe('checksumImage and checksumStream: test vectors', () => {
  for (const v of VECTORS) {
    test(v.name, async () => {
      const digest = v.algorithm ?? 'sha256';
      for (const [threads, windowSize] of [
        [0, 65536],
        [0, 8 * MiB],
        [2, 3 * 65536],
      ] as const) {
        const img = vectorImage(v.segments);
        const hasher = threads ? pool : undefined;
        const r = await checksumImage(img, { digest, hasher, threads, windowSize });
        assert.equal(r.digest, v.digest, `image threads=${threads} window=${windowSize}`);
        assert.equal(r.size, totalLength(v.segments));
        assert.equal(img.zeroReads, 0, 'a zero extent was read');
      }
      if (totalLength(v.segments) <= 4 * MiB) {
        const bytes = materialize(v.segments);
        const r = prng(3);
        const chunks = function* () {
          for (let pos = 0; pos < bytes.length; ) {
            const n = 1 + r(100000);
            yield bytes.subarray(pos, pos + n);
            pos += n;
          }
        };
        const s = await checksumStream(asyncOf(chunks()), {
          digest,
          hasher: pool,
          windowSize: MiB,
        });
        assert.equal(s.digest, v.digest, 'stream');
      }
    });
  }
});

async function* asyncOf<T>(items: Iterable<T>): AsyncIterable<T> {
  yield* items;
}

describe('checksumImage: extents layouts against the reference', () => {
  test('random layouts, block sizes, windows and in-flight counts', async () => {
    const r = prng(2024);
    for (let round = 0; round < 150; round++) {
      const bs = [512, 4096, 65536][r(3)]!;
      const pieces: Piece[] = [];
      const n = 1 + r(10);
      for (let i = 0; i < n; i++) {
        const length = r(4) === 0 ? bs * (1 + r(4)) : 1 + r(3 * bs);
        const kind = r(4);
        if (kind === 0) pieces.push({ length, bytes: randomBytes(length) });
        else if (kind === 1)
          pieces.push({ length, byte: 0 }); // zero bytes reported as data
        else pieces.push({ length, byte: 0, zero: true });
      }
      const size = pieces.reduce((a, p) => a + p.length, 0);
      const cuts = Array.from({ length: r(4) }, () => r(size));
      const img = new PieceImage(pieces, cuts);
      const bytes = Buffer.concat(pieces.map((p) => p.bytes ?? Buffer.alloc(p.length, p.byte)));
      const windowSize = bs * [1, 2, 3, 8][r(4)]!;
      const inFlight = 1 + r(3);
      const hasher = r(5) === 0 ? pool : new InlineHasher();
      const res = await checksumImage(img, { blockSize: bs, windowSize, inFlight, hasher });
      const what = `round ${round} bs=${bs} window=${windowSize} pieces=${JSON.stringify(
        pieces.map((p) => [p.length, p.zero ? 'z' : p.bytes ? 'd' : '0']),
      )}`;
      assert.equal(res.digest, referenceBlkhash(bytes, 'sha256', bs), what);
      assert.equal(img.zeroReads, 0, `zero extent read: ${what}`);
      const dataBytes = pieces.filter((p) => !p.zero).reduce((a, p) => a + p.length, 0);
      assert.equal(res.bytesRead, dataBytes, what);
    }
  });

  test('a block partly zero extent, partly data is hashed over its real bytes', async () => {
    // One 64 KiB block: data, a zero extent, data again; and a block with a zero extent tail.
    const pieces: Piece[] = [
      { length: 1000, byte: 7 },
      { length: 30000, zero: true },
      { length: 34536, byte: 9 },
      { length: 65536, zero: true },
      { length: 100, byte: 1 },
      { length: 65436, zero: true },
    ];
    const img = new PieceImage(pieces);
    const bytes = Buffer.concat(pieces.map((p) => Buffer.alloc(p.length, p.byte ?? 0)));
    const res = await checksumImage(img, { threads: 0 });
    assert.equal(res.digest, referenceBlkhash(bytes));
    assert.equal(img.zeroReads, 0);
    assert.equal(res.bytesRead, 1000 + 34536 + 100);
  });
});

function ext(offset: number, length: number): Extent {
  return { offset, length, zero: false, hole: false };
}

/** Records concurrency and buffers of an inner hasher; finishes jobs out of order. */
class ShuffledHasher implements BlockHasher {
  readonly threads = 2;
  private readonly inner = new InlineHasher();
  outstanding = 0;
  maxOutstanding = 0;
  readonly buffers = new Set<ArrayBuffer>();
  private readonly r = prng(99);

  async hash(d: BlockDigester, buffer: ArrayBuffer, length: number): Promise<HashResult> {
    this.buffers.add(buffer);
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    await new Promise((ok) => setTimeout(ok, this.r(4)));
    this.outstanding--;
    return this.inner.hash(d, buffer, length);
  }

  async close(): Promise<void> {}
}

describe('OrderedBlkHash', () => {
  test('out-of-order completion keeps block order; buffers bounded by inFlight', async () => {
    const data = randomBytes(40 * 65536 + 777);
    const hasher = new ShuffledHasher();
    const progress: number[] = [];
    const res = await checksumImage(new PieceImage([{ length: data.length, bytes: data }]), {
      hasher,
      windowSize: 2 * 65536,
      inFlight: 3,
      onProgress: ({ done }) => progress.push(done),
    });
    assert.equal(res.digest, referenceBlkhash(data));
    assert.ok(hasher.maxOutstanding <= 3, `outstanding ${hasher.maxOutstanding}`);
    assert.ok(hasher.maxOutstanding >= 2, 'windows should overlap');
    assert.ok(hasher.buffers.size <= 3, `${hasher.buffers.size} window buffers`);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
    );
    assert.equal(progress.at(-1), data.length);
  });

  test('only the last window may end inside a block', async () => {
    const sink = new OrderedBlkHash(new BlockDigester(), new InlineHasher(), {
      windowSize: 65536,
      inFlight: 2,
    });
    const buf = await sink.acquire();
    sink.submit(buf, 1000);
    assert.throws(() => sink.zeroBlocks(1), { code: 'USAGE' });
    assert.equal(
      (await sink.digest()).toString('hex'),
      referenceBlkhash(new Uint8Array(buf.buffer, 0, 1000)),
    );
  });
});

describe('HashPool', () => {
  test('buffers are transferred to workers, not copied, and come back', async () => {
    const d = new BlockDigester();
    const buffer = new ArrayBuffer(4 * 65536);
    new Uint8Array(buffer).fill(0x41);
    const pending = pool.hash(d, buffer, 3 * 65536 + 5);
    assert.equal(buffer.byteLength, 0, 'the buffer should be detached (transferred)');
    const res = await pending;
    assert.equal(res.buffer.byteLength, 4 * 65536);
    assert.equal(new Uint8Array(res.buffer)[100], 0x41);
    const expected = new Uint8Array(4 * 32);
    d.hashBlocks(new Uint8Array(4 * 65536).fill(0x41), 3 * 65536 + 5, expected);
    assert.deepEqual(Buffer.from(res.digests), Buffer.from(expected));
  });

  test('a shared window is hashed in place: neither detached nor copied', async () => {
    const d = new BlockDigester();
    const shared = new SharedArrayBuffer(2 * 65536);
    const view = new Uint8Array(shared).fill(0x42);
    const res = await pool.hash(d, shared, 2 * 65536);
    assert.equal(shared.byteLength, 2 * 65536);
    // The worker saw the caller's memory: a write after the job is visible through its answer.
    view[0] = 7;
    assert.equal(new Uint8Array(res.buffer)[0], 7);
    const expected = new Uint8Array(2 * 32);
    d.hashBlocks(new Uint8Array(2 * 65536).fill(0x42), 2 * 65536, expected);
    assert.deepEqual(Buffer.from(res.digests), Buffer.from(expected));
  });

  test('window buffers are shared memory (decode workers fill them in place)', async () => {
    const sink = new OrderedBlkHash(new BlockDigester(), new InlineHasher(), {
      windowSize: 65536,
      inFlight: 1,
    });
    const buf = await sink.acquire();
    assert.ok(buf.buffer instanceof SharedArrayBuffer);
    assert.throws(() => sink.submit(new Uint8Array(65536), 65536), { code: 'USAGE' });
    sink.submit(buf.fill(0x41), 65536);
    assert.equal((await sink.digest()).toString('hex'), vector('block_data').digest);
  });

  test('workers start whatever flags the parent process runs with', () => {
    const url = new URL('../../src/ops/checksum/checksum.js', import.meta.url).href;
    const script = [
      `const { checksumStream } = await import(${JSON.stringify(url)});`,
      'const r = await checksumStream([new Uint8Array(65536).fill(0x41)], { threads: 1 });',
      'console.log(r.digest);',
    ].join('\n');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script]);
    assert.equal(out.toString().trim(), vector('block_data').digest);
  });

  test('workers started ahead of work (warm) never keep the process alive', () => {
    const url = new URL('../../src/ops/checksum/pool.js', import.meta.url).href;
    const script = [
      `const { HashPool } = await import(${JSON.stringify(url)});`,
      'new HashPool(2).warm();',
      'await new Promise((resolve) => setImmediate(resolve));',
      // What would keep the event loop alive; exit either way so a failure cannot hang.
      'console.log(JSON.stringify(process.getActiveResourcesInfo()));',
      'process.exit(0);',
    ].join('\n');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script]);
    const alive = (JSON.parse(out.toString()) as string[]).filter((r) => r !== 'PipeWrap');
    assert.deepEqual(alive, [], 'only the stdio pipes may be active');
  });

  test('closing a pool settles the jobs it still runs', async () => {
    const p = new HashPool(1);
    const settled: string[] = [];
    const job = p.hash(new BlockDigester(), new SharedArrayBuffer(64 * MiB), 64 * MiB).then(
      () => settled.push('resolved'),
      (err: { code?: string }) => settled.push(String(err.code)),
    );
    await p.close();
    await new Promise((resolve) => setImmediate(resolve));
    // Finished first (a slow machine) or stopped: either way the caller is answered.
    assert.equal(settled.length, 1, 'the job never settled');
    assert.ok(['resolved', 'ABORTED'].includes(settled[0]!), settled[0]);
    await job;
  });

  test('a closed pool refuses work', async () => {
    const p = new HashPool(1);
    await p.close();
    await assert.rejects(p.hash(new BlockDigester(), new ArrayBuffer(10), 10), {
      code: 'ABORTED',
    });
  });
});

describe('errors', () => {
  test('a failing read rejects with its error; nothing is left unhandled', async () => {
    class Failing extends PieceImage {
      protected override async readAt(buf: Uint8Array, offset: number): Promise<void> {
        if (offset >= 3 * 65536) throw new CorruptImageError('bad');
        return super.readAt(buf, offset);
      }
    }
    const img = new Failing([{ length: 10 * 65536, byte: 3 }]);
    await assert.rejects(checksumImage(img, { windowSize: 65536, hasher: pool }), {
      code: 'CORRUPT',
    });
  });

  test('extents that skip, overlap, stop early or run past the end are refused', async () => {
    const layouts: Extent[][] = [
      [ext(0, 4096), ext(8192, 4096)],
      [ext(0, 8192), ext(4096, 8192)],
      [ext(0, 4096)],
      [ext(0, 4096), ext(4096, 65536)],
      [ext(0, 0), ext(0, 12288)],
    ];
    for (const list of layouts) {
      const image: Image = {
        format: 'hostile',
        size: 12288,
        capabilities: { write: false, zero: false, trim: false, flush: false, extents: true },
        read: async (buf) => void buf.fill(1),
        extents: async function* () {
          yield* list;
        },
        close: async () => {},
      };
      await assert.rejects(checksumImage(image, { threads: 0 }), { code: 'CORRUPT' });
    }
  });

  test('cancelled by an AbortSignal', async () => {
    const ac = new AbortController();
    ac.abort();
    const img = new PieceImage([{ length: 65536, byte: 3 }]);
    await assert.rejects(checksumImage(img, { signal: ac.signal, threads: 0 }), {
      code: 'ABORTED',
    });
  });
});
