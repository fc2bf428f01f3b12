/**
 * Bytes after the last compressed stream: every decoder (system library, tool, JS/WASM) gives
 * the answer of the reference tool (`xz -dc`, `gzip -dc`, `zstd -dc`, `bzip2 -dc`): the same
 * bytes where it exits 0 (bzip2 ignores trailing garbage, xz 4-byte zero padding, gzip zero
 * padding), a CorruptImageError where it exits non-zero.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CorruptImageError } from '../../src/errors.js';
import { setNativeEnabled } from '../../src/io/native.js';
import { decoderFor, decompress } from '../../src/sources/decompress/index.js';

const TOOLS = { xz: 'xz', gzip: 'gzip', zstd: 'zstd', bzip2: 'bzip2' } as const;
type Kind = keyof typeof TOOLS;
const MAGIC: Record<Kind, number[]> = {
  xz: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
  gzip: [0x1f, 0x8b, 0x08],
  zstd: [0x28, 0xb5, 0x2f, 0xfd],
  bzip2: [0x42, 0x5a, 0x68, 0x39],
};
const TAILS: [string, Buffer][] = [
  ['text', Buffer.from('garbage!garbage!')],
  ['16 zero bytes', Buffer.alloc(16)],
  ['15 zero bytes', Buffer.alloc(15)],
  ['X', Buffer.from('X')],
  ['Xy', Buffer.from('Xy')],
  ['B', Buffer.from('B')],
  ['BZ', Buffer.from('BZ')],
  ['BZh9', Buffer.from('BZh9')],
  ['BZh0abc', Buffer.from('BZh0abc')],
  ['BZhX', Buffer.from('BZhX')],
];

const raw = randomBytes(300_000);
/** Every decoder: [native calls on, accelerators on]. */
const DECODERS = [
  [true, true],
  [false, true],
  [true, false],
  [false, false],
] as const;

async function decode(kind: Kind, data: Buffer, accelerate: boolean): Promise<Buffer | Error> {
  // Odd-sized input chunks: the tail lands across chunk boundaries.
  const chunks = async function* () {
    for (let at = 0; at < data.length; at += 4093) yield data.subarray(at, at + 4093);
  };
  const parts: Buffer[] = [];
  try {
    for await (const c of decompress(kind, chunks(), 'test', { accelerate })) {
      parts.push(Buffer.from(c));
    }
    return Buffer.concat(parts);
  } catch (err) {
    return err as Error;
  }
}

for (const kind of Object.keys(TOOLS) as Kind[]) {
  test(`${kind}: bytes after the last stream get the answer of ${TOOLS[kind]} -dc on every decoder`, async () => {
    const packed = spawnSync(TOOLS[kind], ['-c'], { input: raw, maxBuffer: 1 << 26 }).stdout;
    const tails: [string, Buffer][] = [
      ...TAILS,
      [`magic + junk`, Buffer.concat([Buffer.from(MAGIC[kind]), Buffer.from('junkjunk')])],
    ];
    for (const [name, tail] of tails) {
      const input = Buffer.concat([packed, tail]);
      const ref = spawnSync(TOOLS[kind], ['-dc'], { input, maxBuffer: 1 << 26 });
      for (const [native, accelerate] of DECODERS) {
        setNativeEnabled(native);
        try {
          const what = `${kind} + ${name} (${decoderFor(kind, { accelerate })})`;
          const out = await decode(kind, input, accelerate);
          if (ref.status === 0) {
            assert.ok(out instanceof Buffer, `${what}: ${(out as Error).message}`);
            assert.ok(out.equals(raw), what);
          } else {
            assert.ok(out instanceof CorruptImageError, `${what}: tool exits ${ref.status}`);
          }
        } finally {
          setNativeEnabled(true);
        }
      }
    }
  });
}

test('gzip: trailing garbage is named as such', async () => {
  const packed = spawnSync('gzip', ['-c'], { input: raw, maxBuffer: 1 << 26 }).stdout;
  const out = await decode('gzip', Buffer.concat([packed, Buffer.from('junk')]), true);
  assert.ok(out instanceof CorruptImageError);
  assert.match(out.message, /trailing garbage/);
});
