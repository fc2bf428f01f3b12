/**
 * The liblzma/libbz2/libzstd decode worker: output equal to the system tool's, zero slots handed on as
 * the shared zero chunk (never copied across threads), concatenated streams, and consumers that
 * take the zero-chunk shortcut (checksum) giving the same digest as for plain bytes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setNativeEnabled } from '../../src/io/native.js';
import { openStream } from '../../src/open-stream.js';
import { checksumStream } from '../../src/ops/checksum/index.js';
import { decoderFor } from '../../src/sources/decompress/index.js';
import { isZeroChunk, zeroChunk } from '../../src/sources/sequential.js';
import { diskpipe, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;

/** 8 MiB + 5: data at the start, one run across a slot boundary, a tail; zeroes elsewhere. */
const raw = Buffer.alloc(8 * MiB + 5);
randomBytes(100_000).copy(raw, 0);
randomBytes(200_000).copy(raw, 3 * MiB - 7);
raw.fill('tail', 8 * MiB);
writeFileSync(join(dir, 'disk.raw'), raw);

type Tool = 'xz' | 'bzip2' | 'zstd';
const SUFFIX: Record<Tool, string> = { xz: '.xz', bzip2: '.bz2', zstd: '.zst' };

function pack(tool: Tool, data: Buffer, extra: string[] = []): Buffer {
  const quiet = tool === 'zstd' ? ['-q'] : [];
  return execFileSync(tool, [...quiet, '-c', ...extra], { input: data, maxBuffer: 1 << 26 });
}

async function chunksOf(path: string, accelerate = true) {
  const opened = await openStream(path, { accelerate });
  assert.equal(opened.kind, 'stream');
  if (opened.kind !== 'stream') throw new Error('not a stream');
  const parts: Buffer[] = [];
  let zeroChunks = 0;
  try {
    for await (const c of opened.stream.chunks()) {
      if (isZeroChunk(c)) zeroChunks++;
      parts.push(Buffer.from(c));
    }
  } finally {
    await opened.stream.close();
  }
  return { bytes: Buffer.concat(parts), zeroChunks };
}

/** 1 MiB slots of `data` that are all zeroes (what the worker reports by length only). */
function zeroSlots(data: Buffer): number {
  let n = 0;
  for (let at = 0; at < data.length; at += MiB) {
    const slot = data.subarray(at, Math.min(at + MiB, data.length));
    if (slot.every((b) => b === 0)) n++;
  }
  return n;
}

writeFileSync(join(dir, 'disk.raw.xz'), pack('xz', raw, ['-T1', '-3']));
writeFileSync(join(dir, 'disk.raw.bz2'), pack('bzip2', raw));
writeFileSync(join(dir, 'disk.raw.zst'), pack('zstd', raw, ['--check']));

for (const tool of ['xz', 'bzip2', 'zstd'] as const) {
  const suffix = SUFFIX[tool];

  test(`${tool} (library): bytes equal the tool's, zero slots come as the shared zero chunk`, async () => {
    assert.match(decoderFor(tool), /^lib:/);
    const packed = join(dir, `disk.raw${suffix}`);
    const byTool = execFileSync(tool, ['-dc', packed], { maxBuffer: 1 << 26 });
    const { bytes, zeroChunks } = await chunksOf(packed);
    assert.ok(bytes.equals(byTool));
    assert.ok(bytes.equals(raw));
    assert.equal(zeroChunks, zeroSlots(raw));
    assert.equal(zeroChunks, 5); // slots 1, 4, 5, 6, 7
  });

  test(`${tool}: concatenated streams decode like the tool (library, tool and js)`, async () => {
    const a = Buffer.alloc(1_500_000, 'first ');
    const b = randomBytes(70_000);
    const parts = [pack(tool, a), pack(tool, b), pack(tool, Buffer.alloc(0))];
    if (tool === 'xz') parts.push(Buffer.alloc(8)); // stream padding, allowed between streams
    const packed = join(dir, `concat${suffix}`);
    writeFileSync(packed, Buffer.concat(parts));
    const byTool = execFileSync(tool, ['-dc', packed], { maxBuffer: 1 << 26 });
    assert.ok(byTool.equals(Buffer.concat([a, b])));
    for (const how of ['lib', 'tool', 'js'] as const) {
      // zstd takes libzstd whenever native calls are on: only the switch reaches its JS path.
      setNativeEnabled(how === 'lib' || (how === 'js' && tool !== 'zstd'));
      try {
        const { bytes } = await chunksOf(packed, how !== 'js');
        assert.ok(bytes.equals(byTool), `${tool} ${how}`);
      } finally {
        setNativeEnabled(true);
      }
    }
  });
}

test('bzip2 (library): trailing garbage after the last stream is ignored, as bzip2 -dc does', async () => {
  const data = Buffer.alloc(300_000, 'bz ');
  const packed = join(dir, 'garbage.bz2');
  writeFileSync(packed, Buffer.concat([pack('bzip2', data), Buffer.from('not bzip2 at all\n')]));
  assert.ok(execFileSync('bzip2', ['-dcq', packed], { maxBuffer: 1 << 26 }).equals(data));
  assert.ok((await chunksOf(packed)).bytes.equals(data));
});

test('xz (library): corruption after some output names where it stopped', async () => {
  const packed = Buffer.from(pack('xz', randomBytes(3 * MiB), ['-T1', '-0']));
  // Damage the middle of the compressed data: the first MiBs decode, then the error.
  for (let i = 0; i < 64; i++) packed[Math.floor(packed.length * 0.7) + i]! ^= 0x5a;
  const bad = join(dir, 'bad-middle.raw.xz');
  writeFileSync(bad, packed);
  await assert.rejects(chunksOf(bad), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CORRUPT', err.message);
    assert.match(
      err.message,
      /bad-middle\.raw\.xz: xz data is corrupt or truncated \(after [1-9]\d* bytes\): .*LZMA_DATA_ERROR/,
    );
    return true;
  });
});

test('checksumStream: zero chunks anywhere (block-aligned or not) hash like the same bytes', async () => {
  const parts: Uint8Array[] = [
    randomBytes(1000),
    zeroChunk(MiB),
    randomBytes(3),
    zeroChunk(70_000),
    zeroChunk(4 * MiB),
    Buffer.from('end'),
    zeroChunk(65_536 * 3),
  ];
  const plain = Buffer.concat(parts.map((p) => Buffer.from(p)));
  async function* chunks(list: Uint8Array[]) {
    yield* list;
  }
  const opts = { windowSize: 256 * 1024, threads: 0 };
  const a = await checksumStream(chunks(parts), opts);
  const b = await checksumStream(chunks([plain]), opts);
  assert.equal(a.digest, b.digest);
  assert.equal(a.size, plain.length);
  // Only the chunks that were not known zero were hashed as data.
  assert.ok(a.hashedBytes <= b.hashedBytes);
});

test('checksum of raw.xz, raw.bz2 and raw.zst equals the raw file digest with every decoder (CLI)', () => {
  const want = diskpipe(['checksum', join(dir, 'disk.raw')]);
  assert.equal(want.status, 0, want.stderr);
  const digest = want.stdout.split(' ')[0];
  for (const suffix of ['.xz', '.bz2', '.zst']) {
    const packed = join(dir, `disk.raw${suffix}`);
    const envs: Record<string, string>[] = [
      {},
      { DISKPIPE_NO_NATIVE: '1' },
      { DISKPIPE_NO_ACCEL: '1' },
    ];
    // zstd's built-in decoder (npm binding, fzstd) runs only with both switches.
    if (suffix === '.zst') envs.push({ DISKPIPE_NO_NATIVE: '1', DISKPIPE_NO_ACCEL: '1' });
    for (const env of envs) {
      const r = diskpipe(['checksum', packed], { env });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.split(' ')[0], digest, `${suffix} ${JSON.stringify(env)}`);
    }
  }
});

test('nested layers: gzip and zstd inside xz read the outer ring safely (library outside)', async () => {
  // 24 MiB of incompressible data: the inner stream passes through the outer decoder's 8 MiB
  // ring three times, while zlib or the zstd tool still hold earlier chunks.
  const inner = randomBytes(24 * MiB);
  for (const [tool, suffix] of [
    ['gzip', '.gz'],
    ['zstd', '.zst'],
  ] as const) {
    const packed = execFileSync(tool, ['-c', '-1'], { input: inner, maxBuffer: 1 << 26 });
    const path = join(dir, `inner.raw${suffix}.xz`);
    writeFileSync(path, pack('xz', packed, ['-T1', '-0']));
    const { bytes } = await chunksOf(path);
    assert.ok(bytes.equals(inner), tool);
  }
});
