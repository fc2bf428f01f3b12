/**
 * The pure-JS bzip2 decoder (no libbz2, no bzip2 tool) is bounded by the format, not by the
 * image: it decodes one block at a time, when the consumer asks, so it is never more than one
 * block's output ahead. Counted by wrapping the package's block decoder, not by time or RSS.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { decompress } from '../../src/sources/decompress/index.js';
import { run, tempDir } from '../helpers/peers.js';

const require = createRequire(import.meta.url);
const dir = tempDir();

type Decode = (bits: unknown, sink: (b: number) => void, ...rest: unknown[]) => unknown;
const lib = require('unbzip2-stream/lib/bzip2.js') as { decompress: Decode };

/** Counts the bytes the package's block decoder produces, in total and per block. */
function countBlocks() {
  const original = lib.decompress;
  const count = {
    produced: 0,
    largestBlock: 0,
    restore: () => {
      lib.decompress = original;
    },
  };
  lib.decompress = function (this: unknown, bits, sink, ...rest) {
    let n = 0;
    const result = original.call(
      this,
      bits,
      (b: number) => {
        n++;
        sink(b);
      },
      ...rest,
    );
    count.produced += n;
    count.largestBlock = Math.max(count.largestBlock, n);
    return result;
  };
  return count;
}

async function* chunked(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.slice(at, at + size);
}

async function bzip2(name: string, data: Buffer, level = 9): Promise<Buffer> {
  const path = join(dir, name);
  writeFileSync(path, data);
  await run('bzip2', ['-kf', `-${level}`, path]);
  return readFileSync(`${path}.bz2`);
}

/** What the peer decodes. */
function peer(compressed: Buffer): Buffer {
  const r = spawnSync('bzip2', ['-dc'], { input: compressed, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, String(r.stderr));
  return r.stdout;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('bzip2 (js): at most one block of output ahead of a slow consumer', async () => {
  // Text that compresses very well (its whole input arrives before the first block is read),
  // a zero run (bzip2's run-length stage: far more output than block size), random, text.
  const raw = Buffer.concat([
    Buffer.alloc(8 << 20, 'bounded bzip2 decoder '),
    Buffer.alloc(4 << 20),
    randomBytes(256 << 10),
    Buffer.alloc(2 << 20, 'tail text '),
  ]);
  const compressed = await bzip2('bound.raw', raw);
  const count = countBlocks();
  const hash = createHash('sha256');
  let consumed = 0;
  let worst = 0;
  try {
    for await (const c of decompress('bzip2', chunked(compressed, 64 << 10), 'bound.raw.bz2', {
      accelerate: false,
    })) {
      consumed += c.length;
      hash.update(c);
      // Give a decoder that works ahead every chance to do so.
      await new Promise((resolve) => setImmediate(resolve));
      worst = Math.max(worst, count.produced - consumed);
      assert.ok(
        count.produced - consumed <= count.largestBlock,
        `${count.produced} bytes decoded, ${consumed} consumed, largest block ${count.largestBlock}`,
      );
    }
  } finally {
    count.restore();
  }
  assert.equal(consumed, raw.length);
  assert.equal(hash.digest('hex'), sha(peer(compressed)));
  assert.ok(worst > 0);
});

test('bzip2 (js): concatenated streams of different levels, input in odd small chunks', async () => {
  const a = await bzip2('a.raw', Buffer.alloc(300_000, 'level one, 100k blocks '), 1);
  const b = await bzip2('b.raw', Buffer.concat([randomBytes(150_000), Buffer.alloc(500_000)]));
  const both = Buffer.concat([a, b]);
  const parts: Uint8Array[] = [];
  for await (const c of decompress('bzip2', chunked(both, 4099), 'both.bz2', {
    accelerate: false,
  }))
    parts.push(Uint8Array.from(c));
  assert.equal(sha(Buffer.concat(parts)), sha(peer(both)));
});
