/**
 * The decompression engine: batches decode into place (inline and on the worker pool, into
 * shared and plain buffers), failures name the item, a qcow2 read of many compressed clusters
 * is one batch, and the pool never keeps a process alive.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deflateRawSync, deflateSync } from 'node:zlib';
import {
  acquireShared,
  type BatchItem,
  decodeBatch,
  decodeStats,
  Flavour,
} from '../../src/codec/engine.js';
import { openImage } from '../../src/open.js';
import '../../src/formats/index.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const CS = 65536;
const dir = tempDir();

function clusters(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    const c = Buffer.alloc(CS, i + 1);
    randomBytes(100).copy(c, i * 7);
    return c;
  });
}

/** A span of compressed clusters back to back (odd gaps between), and the batch items. */
function batchOf(plain: Buffer[], flavour: Flavour): { span: Buffer; items: BatchItem[] } {
  const parts: Buffer[] = [];
  const items: BatchItem[] = [];
  let at = 0;
  plain.forEach((c, i) => {
    const z = flavour === Flavour.Deflate ? deflateRawSync(c) : deflateSync(c);
    const gap = Buffer.alloc(i % 3);
    parts.push(z, gap);
    // Out of order in the destination: item i goes to slot n-1-i.
    items.push({ at, size: z.length, to: (plain.length - 1 - i) * CS, length: CS, flavour });
    at += z.length + gap.length;
  });
  return { span: Buffer.concat(parts), items };
}

test('batches decode each cluster into its place, inline and on workers', async () => {
  for (const n of [1, 9]) {
    for (const flavour of [Flavour.Deflate, Flavour.ZlibOrDeflate]) {
      const plain = clusters(n);
      const { span, items } = batchOf(plain, flavour);
      const want = Buffer.concat([...plain].reverse());
      for (const shared of [false, true]) {
        const dst = shared ? acquireShared(n * CS) : new Uint8Array(n * CS);
        const before = { ...decodeStats };
        assert.equal(await decodeBatch(span, items, dst), undefined);
        assert.ok(Buffer.from(dst).equals(want), `n=${n} flavour=${flavour} shared=${shared}`);
        // One batch is one decode call, wherever it runs.
        const calls = decodeStats.inline + decodeStats.worker - before.inline - before.worker;
        assert.equal(calls, 1);
        assert.equal(decodeStats.worker - before.worker, n === 1 ? 0 : 1);
      }
    }
  }
});

test('a bad item is reported by index; sizes are exact; bombs are bounded', async () => {
  const plain = clusters(4);
  const { span, items } = batchOf(plain, Flavour.Deflate);
  const bad = Buffer.from(span);
  bad.fill(0xff, items[2]!.at, items[2]!.at + 8);
  const f = await decodeBatch(bad, items, new Uint8Array(4 * CS));
  assert.equal(f?.index, 2);
  assert.equal(f?.written, undefined);

  const short = deflateRawSync(Buffer.alloc(1000, 1));
  const s = await decodeBatch(
    short,
    [{ at: 0, size: short.length, to: 0, length: CS, flavour: 0 }],
    new Uint8Array(CS),
  );
  assert.equal(s?.written, 1000);

  const bomb = deflateRawSync(Buffer.alloc(64 * CS));
  const b = await decodeBatch(
    bomb,
    [{ at: 0, size: bomb.length, to: 0, length: CS, flavour: 0 }],
    new Uint8Array(CS),
  );
  assert.match(b?.message ?? '', /more than 65536 bytes/);
});

test('a qcow2 read of 2 MiB of compressed clusters is one batch of the engine', async () => {
  const src = join(dir, 'text.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '4M');
  await qemuIo(src, ['write -P 0x41 0 2M']);
  const packed = join(dir, 'text-c.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', src, packed);
  const image = await openImage(packed);
  try {
    const buf = Buffer.allocUnsafe(2 * 1024 * 1024);
    const before = { ...decodeStats };
    await image.read(buf, 0);
    assert.equal(decodeStats.worker + decodeStats.inline - before.worker - before.inline, 1);
    // A local file: the worker read the compressed bytes itself (this thread copied none).
    assert.equal(decodeStats.workerReads - before.workerReads, 1, 'read on the worker');
    assert.ok(buf.equals(Buffer.alloc(buf.length, 0x41)));
  } finally {
    await image.close();
  }
});

test('the worker pool never keeps the process alive', () => {
  // A child decodes a batch on a worker, then has nothing left to do: it must exit by itself.
  const engine = new URL('../../src/codec/engine.js', import.meta.url).href;
  const script = `
    import { deflateRawSync } from 'node:zlib';
    const { decodeBatch, decodeStats } = await import(${JSON.stringify(engine)});
    const z = deflateRawSync(Buffer.alloc(${CS}, 3));
    const span = Buffer.concat([z, z]);
    const items = [0, 1].map((i) => ({ at: i * z.length, size: z.length, to: i * ${CS}, length: ${CS}, flavour: 0 }));
    const f = await decodeBatch(span, items, new Uint8Array(${2 * CS}));
    console.log(JSON.stringify({ f: f ?? null, worker: decodeStats.worker }));
  `;
  const file = join(dir, 'pool-exit.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { f: null, worker: 1 });
});

test('zstd batches decode on a worker too: one answer per batch, bad frames by index', async () => {
  const { compress } = await import('@mongodb-js/zstd');
  const plain = clusters(9);
  const frames = await Promise.all(plain.map((c) => compress(c, 3)));
  const items: BatchItem[] = [];
  let at = 0;
  frames.forEach((f, i) => {
    items.push({ at, size: f.length, to: i * CS, length: CS, flavour: Flavour.Zstd });
    at += f.length;
  });
  const span = Buffer.concat(frames);
  for (const shared of [false, true]) {
    const dst = shared ? acquireShared(9 * CS) : new Uint8Array(9 * CS);
    const before = { ...decodeStats };
    assert.equal(await decodeBatch(span, items, dst), undefined);
    assert.ok(Buffer.from(dst).equals(Buffer.concat(plain)), `shared=${shared}`);
    assert.equal(decodeStats.worker - before.worker, 1, 'the whole zstd batch went to a worker');
    assert.equal(decodeStats.zstdFrames - before.zstdFrames, 9);
  }
  // A frame whose content checksum (zstd CLI frames carry one) does not match: only
  // checksum verification can tell, the data itself decodes.
  const checked = spawnSync('zstd', ['-q', '-c', '-3'], { input: plain[5] }).stdout;
  assert.ok((checked[4]! & 4) !== 0, 'the zstd CLI writes a content checksum');
  checked[checked.length - 1]! ^= 0xff;
  const withBad = Buffer.concat([span, checked]);
  const last = { at: span.length, size: checked.length, to: 0, length: CS, flavour: Flavour.Zstd };
  const f = await decodeBatch(withBad, [...items, last], new Uint8Array(9 * CS));
  assert.equal(f?.index, 9);
  assert.match(f?.message ?? '', /checksum/i);
  // A frame of the wrong size is reported with the size it decodes to.
  const small = await compress(Buffer.alloc(1000, 7), 3);
  const s = await decodeBatch(
    Buffer.concat([span, small]),
    [...items, { at: span.length, size: small.length, to: 0, length: CS, flavour: Flavour.Zstd }],
    new Uint8Array(9 * CS),
  );
  assert.equal(s?.index, 9);
  assert.equal(s?.written, 1000);
});

test('a compressed qcow2 cut short after it was opened: the worker read reports where it ended', async () => {
  const src = join(dir, 'cut-src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '4M');
  await qemuIo(src, ['write -P 0x42 0 2M']);
  const packed = join(dir, 'cut.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', src, packed);
  const { statSync, truncateSync } = await import('node:fs');
  const image = await openImage(packed);
  try {
    // Tables are loaded by a first small read; then the file is cut while open: the image
    // still believes the old size, so only the worker's read can tell.
    await image.read(Buffer.allocUnsafe(4096), 0);
    const size = statSync(packed).size;
    truncateSync(packed, Math.floor(size / 2));
    const before = decodeStats.workerReads;
    await assert.rejects(image.read(Buffer.allocUnsafe(2 * 1024 * 1024), 0), (err: Error) => {
      assert.equal(err.name, 'CorruptImageError');
      assert.match(err.message, /file ended at \d+ reading compressed data/);
      return true;
    });
    assert.equal(decodeStats.workerReads - before, 1);
  } finally {
    await image.close();
  }
});
