/**
 * The zstd fallback without libzstd (fzstd, streamed block by block) keeps no input it has
 * decoded: fzstd 0.1.1 used to keep an empty view of every block pushed to it, which held
 * every compressed input buffer alive for the whole stream. Counted in fzstd's held-back
 * list, not by RSS.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { setNativeEnabled } from '../../src/io/native.js';
import { decoderFor, decompress } from '../../src/sources/decompress/index.js';

const require = createRequire(import.meta.url);

interface Held {
  c?: unknown[];
}
const fzstd = require('fzstd') as {
  Decompress: { prototype: { push(this: Held, chunk: Uint8Array, final?: boolean): void } };
};

async function* pieces(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('zstd (fzstd): the decoder holds no views of input it has already decoded', async () => {
  const raw = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20, 'text '), randomBytes(9)]);
  const r = spawnSync('zstd', ['-q', '-c', '--no-content-size'], {
    input: raw,
    maxBuffer: 1 << 26,
  });
  assert.equal(r.status, 0, String(r.stderr));
  const proto = fzstd.Decompress.prototype;
  const original = proto.push;
  let pushes = 0;
  let mostHeld = 0;
  proto.push = function (chunk, final) {
    pushes++;
    mostHeld = Math.max(mostHeld, this.c?.length ?? 0);
    original.call(this, chunk, final);
  };
  setNativeEnabled(false);
  const hash = createHash('sha256');
  let n = 0;
  try {
    assert.equal(decoderFor('zstd', { accelerate: false }), 'js');
    for await (const c of decompress('zstd', pieces(r.stdout, 1 << 20), 'held.zst', {
      accelerate: false,
    })) {
      n += c.length;
      hash.update(c);
    }
  } finally {
    proto.push = original;
    setNativeEnabled(true);
  }
  assert.equal(n, raw.length);
  assert.equal(hash.digest('hex'), sha(raw));
  assert.ok(pushes > 20, `${pushes} pushes`);
  assert.ok(mostHeld <= 1, `fzstd held ${mostHeld} views of earlier input`);
});
