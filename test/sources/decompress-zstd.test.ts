/**
 * The built-in .zst stream decoder, with the system's libzstd and with the native switch off
 * (fzstd and the npm binding): concatenated and skippable frames, frame checksums, truncation,
 * an oversized window, and libzstd's output handed over in steps of at most 1 MiB.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { zstdLib } from '../../src/codec/zstd-lib.js';
import { setNativeEnabled } from '../../src/io/native.js';
import { decoderFor, decompress } from '../../src/sources/decompress/index.js';

const MiB = 1024 * 1024;

function zstd(data: Buffer, ...args: string[]): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', ...args], { input: data, maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
}

/** `data` in pieces of `size` bytes, as a file or a socket would deliver it. */
async function* pieces(data: Buffer, size = 100_000): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function unpack(data: Buffer, accelerate = false): Promise<{ out: Buffer; largest: number }> {
  const parts: Uint8Array[] = [];
  let largest = 0;
  for await (const c of decompress('zstd', pieces(data), 'test.zst', { accelerate })) {
    parts.push(Buffer.from(c));
    largest = Math.max(largest, c.length);
  }
  return { out: Buffer.concat(parts), largest };
}

async function onBothPaths(body: (native: boolean) => Promise<void>): Promise<void> {
  for (const native of [true, false]) {
    setNativeEnabled(native);
    try {
      assert.equal(zstdLib() !== null, native);
      await body(native);
    } finally {
      setNativeEnabled(true);
    }
  }
}

const first = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(5 * MiB), randomBytes(777)]);
const second = Buffer.from('the second frame '.repeat(20_000));
// A frame with a content checksum, a skippable frame, a frame without content size or checksum.
const skippable = Buffer.concat([
  Buffer.from([0x53, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]),
  randomBytes(5),
]);
const checked = zstd(first, '--check');
const multi = Buffer.concat([checked, skippable, zstd(second, '--no-check', '--no-content-size')]);

test('.zst: two frames and a skippable frame decode to the concatenation, in ≤ 1 MiB steps', async () => {
  assert.ok((checked[4]! & 4) !== 0, 'the first frame carries a checksum');
  await onBothPaths(async (native) => {
    assert.equal(decoderFor('zstd', { accelerate: false }), native ? 'lib:libzstd.so.1' : 'js');
    const { out, largest } = await unpack(multi);
    assert.ok(out.equals(Buffer.concat([first, second])), `native=${native}`);
    if (native) assert.ok(largest <= MiB, `largest chunk ${largest}`);
  });
});

test('.zst: a frame whose output ends exactly on a 1 MiB step boundary decodes (no false "truncated")', async () => {
  // 8 MiB of mostly zeroes in one small input chunk: the last step fills its 1 MiB buffer
  // exactly as the frame ends; one more step on the used-up input must not count as "inside
  // a frame".
  const data = Buffer.alloc(8 * MiB);
  data.fill(0x55, MiB, 4 * MiB);
  const packed = zstd(data, '--check');
  await onBothPaths(async (native) => {
    const parts: Uint8Array[] = [];
    for await (const c of decompress('zstd', pieces(packed, packed.length), 'test.zst', {
      accelerate: false,
    }))
      parts.push(Buffer.from(c));
    assert.ok(Buffer.concat(parts).equals(data), `native=${native}`);
  });
});

test('.zst: libzstd is preferred to the zstd tool; with the native switch off the tool runs', async () => {
  assert.equal(decoderFor('zstd', { accelerate: true }), 'lib:libzstd.so.1');
  setNativeEnabled(false);
  try {
    assert.match(decoderFor('zstd', { accelerate: true }), /^tool:/);
    const { out } = await unpack(multi, true);
    assert.ok(out.equals(Buffer.concat([first, second])));
  } finally {
    setNativeEnabled(true);
  }
});

test('.zst: a wrong frame checksum, a cut stream and garbage after a frame are CorruptImageErrors', async () => {
  const badSum = Buffer.from(multi);
  badSum[checked.length - 1]! ^= 0x40;
  const cases: [string, Buffer, RegExp][] = [
    ['checksum', badSum, /checksum/i],
    ['truncated', multi.subarray(0, checked.length - 3), /truncated/],
    ['truncated in the second frame', multi.subarray(0, multi.length - 9), /truncated/],
    ['garbage after', Buffer.concat([checked, Buffer.from('not a frame')]), /corrupt/],
    ['empty', Buffer.alloc(0), /empty/],
  ];
  await onBothPaths(async (native) => {
    for (const [what, data, why] of cases) {
      await assert.rejects(unpack(data), (err: Error) => {
        assert.equal(err.name, 'CorruptImageError', `native=${native} ${what}: ${err.message}`);
        assert.match(err.message, /^test\.zst: /);
        assert.match(err.message, why, `native=${native} ${what}`);
        return true;
      });
    }
  });
});

test('.zst: a frame asking for a window over 256 MiB is refused before any allocation', async () => {
  // Frame header: no content size, window descriptor 2^29; then an empty last raw block.
  const huge = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 19 << 3, 0x01, 0x00, 0x00]);
  await onBothPaths(async (native) => {
    await assert.rejects(unpack(huge), (err: Error) => {
      assert.equal(err.name, 'UnsupportedFeatureError', `native=${native}: ${err.message}`);
      assert.match(err.message, /window/);
      return true;
    });
  });
});

test('.zst (libzstd worker): corruption after some output names where it stopped', async () => {
  const packed = Buffer.from(zstd(randomBytes(3 * MiB), '--check', '-1'));
  for (let i = 0; i < 64; i++) packed[Math.floor(packed.length * 0.7) + i]! ^= 0x5a;
  await assert.rejects(unpack(packed), (err: Error) => {
    assert.equal(err.name, 'CorruptImageError', err.message);
    assert.match(
      err.message,
      /^test\.zst: zstd data is corrupt or truncated \(after [1-9]\d* bytes\)/,
    );
    return true;
  });
});

test('.zst: windows made by zstd --long: 256 MiB decodes, 1 GiB is refused with the limit named', async () => {
  // From stdin zstd knows no content size, so the header keeps the full window it was given.
  const data = Buffer.concat([randomBytes(MiB), Buffer.alloc(2 * MiB), randomBytes(MiB)]);
  const ok = zstd(data, '--long=28');
  const huge = zstd(data, '--long=30');
  await onBothPaths(async (native) => {
    assert.ok((await unpack(ok)).out.equals(data), `native=${native}`);
    await assert.rejects(unpack(huge), (err: Error) => {
      assert.equal(err.name, 'UnsupportedFeatureError', `native=${native}: ${err.message}`);
      assert.match(err.message, /^test\.zst: .*window.*256 MiB/);
      return true;
    });
  });
});
