import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setNativeEnabled } from '../../src/io/native.js';
import { openImage } from '../../src/open.js';
import { openStream } from '../../src/open-stream.js';
import { decoderFor, decompress } from '../../src/sources/decompress/index.js';
import type { SequentialSource } from '../../src/sources/sequential.js';
import { checkedExtents, readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const stageDir = tempDir('diskpipe-stage-test-');

const TOOLS = {
  xz: ['xz', '-k', '-T1', '-3'],
  gzip: ['gzip', '-k'],
  zstd: ['zstd', '-q', '-k'],
  bzip2: ['bzip2', '-k'],
} as const;
const SUFFIX = { xz: '.xz', gzip: '.gz', zstd: '.zst', bzip2: '.bz2' } as const;
type Kind = keyof typeof TOOLS;
const KINDS = Object.keys(TOOLS) as Kind[];

/** 4 MiB + an odd tail: random data, a text pattern, and a long zero run in the middle. */
const raw = join(dir, 'disk.raw');
sparseFile(raw, 4 * 1024 * 1024 + 333);
{
  const fd = openSync(raw, 'r+');
  writeSync(fd, randomBytes(300_000), 0, 300_000, 0);
  writeSync(fd, Buffer.alloc(200_000, 'diskpipe '), 0, 200_000, 3 * 1024 * 1024);
  writeSync(fd, randomBytes(333), 0, 333, 4 * 1024 * 1024);
  closeSync(fd);
}
const rawBytes = readFileSync(raw);

async function compress(kind: Kind, path: string): Promise<string> {
  const [cmd, ...args] = TOOLS[kind];
  await run(cmd, [...args, '-f', path]);
  return path + SUFFIX[kind];
}

async function drain(stream: SequentialSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream.chunks()) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const compressed = new Map<Kind, string>();
for (const kind of KINDS) compressed.set(kind, await compress(kind, raw));

/**
 * The three decoders: the system library in a worker ('lib', xz and bzip2 only), the system
 * tool ('tool': the library turned off with the native switch), the built-in JS/WASM ('js').
 */
type How = 'lib' | 'tool' | 'js';
const HOWS: How[] = ['lib', 'tool', 'js'];

/** Runs `body` with the decoder `how` selected; returns the `accelerate` option to pass. */
async function using<T>(how: How, body: (accelerate: boolean) => Promise<T>): Promise<T> {
  setNativeEnabled(how !== 'tool');
  try {
    return await body(how !== 'js');
  } finally {
    setNativeEnabled(true);
  }
}

function expectedDecoder(kind: Kind, how: How): RegExp {
  // zstd: the system's libzstd (in a worker) whenever native calls are on, in preference to
  // the tool (decompress-zstd.test.ts covers the fallbacks with the native switch off).
  if (kind === 'zstd' && how !== 'tool') return /^lib:libzstd\.so/;
  if (how === 'js' || kind === 'gzip') return /^js$/;
  if (how === 'lib' && kind !== 'zstd') return /^lib:lib(lzma|bz2)\.so/;
  return /^tool:/;
}

for (const kind of KINDS) {
  for (const how of HOWS) {
    test(`${kind} (${how}): raw inside is handed out as one stream, equal to the original`, async () => {
      await using(how, async (accelerate) => {
        assert.match(decoderFor(kind, { accelerate }), expectedDecoder(kind, how));
        const opened = await openStream(compressed.get(kind)!, { accelerate });
        assert.equal(opened.kind, 'stream');
        if (opened.kind !== 'stream') return;
        const { stream } = opened;
        try {
          assert.deepEqual(stream.layers, [kind]);
          assert.equal(stream.untrusted, true);
          assert.equal(stream.format, 'raw');
          assert.ok((await drain(stream)).equals(rawBytes));
        } finally {
          await stream.close();
        }
      });
    });

    test(`${kind} (${how}): truncated data is a CorruptImageError`, async () => {
      const data = readFileSync(compressed.get(kind)!);
      const cut = join(dir, `cut-${how}${SUFFIX[kind]}`);
      writeFileSync(cut, data.subarray(0, Math.floor(data.length / 2)));
      // The error may come while probing the first bytes or later while draining.
      const all = (accelerate: boolean) => async () => {
        const opened = await openStream(cut, { accelerate });
        assert.equal(opened.kind, 'stream');
        if (opened.kind !== 'stream') return;
        try {
          await drain(opened.stream);
        } finally {
          await opened.stream.close();
        }
      };
      await using(how, (accelerate) =>
        assert.rejects(all(accelerate)(), (err: Error) => {
          assert.equal((err as { code?: string }).code, 'CORRUPT', err.message);
          assert.match(err.message, new RegExp(`${kind} data is corrupt or truncated`));
          return true;
        }),
      );
    });
  }

  test(`${kind}: corrupt data is a CorruptImageError (lib, tool and js)`, async () => {
    const data = Buffer.from(readFileSync(compressed.get(kind)!));
    // Keep the magic (bzip2's includes the first block's), overwrite the next 4 KiB.
    const keep = kind === 'bzip2' ? 10 : 6;
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) & 0xff;
    garbage.copy(data, keep, 0, Math.min(4096, data.length - keep));
    const bad = join(dir, `bad${SUFFIX[kind]}`);
    writeFileSync(bad, data);
    for (const how of HOWS) {
      await using(how, (accelerate) =>
        assert.rejects(
          (async () => {
            const opened = await openStream(bad, { accelerate });
            if (opened.kind === 'stream') {
              try {
                await drain(opened.stream);
              } finally {
                await opened.stream.close();
              }
            }
          })(),
          { code: 'CORRUPT' },
          `${kind} ${how}`,
        ),
      );
    }
  });
}

test('an input that fails (a missing file, a reset connection) is not reported as corrupt data', async () => {
  const missing = Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), {
    code: 'ENOENT',
    syscall: 'open',
  });
  const reset = Object.assign(new Error('read ECONNRESET'), {
    code: 'ECONNRESET',
    syscall: 'read',
  });
  for (const kind of KINDS) {
    const data = readFileSync(compressed.get(kind)!);
    // Nothing at all, or half of a good stream, then the input fails.
    const failing = async function* (err: Error, head: Uint8Array) {
      if (head.length > 0) yield head;
      throw err;
    };
    const cases: [Error, Uint8Array, string, RegExp][] = [
      [missing, new Uint8Array(0), 'NOT_FOUND', /^cannot open test\.x: ENOENT: no such file/],
      [reset, data.subarray(0, data.length >> 1), 'IO', /^read error on test\.x: ECONNRESET/],
    ];
    for (const accelerate of [false, true]) {
      for (const [err, head, code, message] of cases) {
        const all = async () => {
          for await (const _ of decompress(kind, failing(err, head), 'test.x', { accelerate })) {
          }
        };
        await assert.rejects(all(), (e: Error & { code?: string }) => {
          assert.equal(e.code, code, `${kind} accelerate=${accelerate}: ${e.message}`);
          assert.match(e.message, message);
          return true;
        });
      }
    }
  }
});

test('a random-access source that fails is not reported as corrupt data (read straight into the decoder)', async () => {
  const reset = Object.assign(new Error('read ECONNRESET'), {
    code: 'ECONNRESET',
    syscall: 'read',
  });
  for (const kind of KINDS) {
    const data = readFileSync(compressed.get(kind)!);
    let reads = 0;
    // Good bytes for the first half, then the source fails.
    const source = {
      name: 'test.x',
      size: data.length,
      async read(buf: Uint8Array, offset: number): Promise<number> {
        reads++;
        if (offset >= data.length >> 1) throw reset;
        // Short reads (the decoders accept them) so that small files reach the failing half.
        const n = Math.min(buf.length, data.length - offset, Math.ceil(data.length / 8));
        buf.set(data.subarray(offset, offset + n));
        return n;
      },
      async close(): Promise<void> {},
    };
    for (const accelerate of [false, true]) {
      const all = async () => {
        for await (const _ of decompress(kind, source, 'test.x', { accelerate })) {
        }
      };
      await assert.rejects(all(), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'IO', `${kind} accelerate=${accelerate}: ${e.message}`);
        assert.match(e.message, /^read error on test\.x: .*ECONNRESET/);
        return true;
      });
    }
    assert.ok(reads > 0);
  }
});

test('detection is by magic: a misleading extension does not matter', async () => {
  const gz = join(dir, 'really-gzip.raw');
  copyFileSync(compressed.get('gzip')!, gz);
  const opened = await openStream(gz);
  assert.equal(opened.kind, 'stream');
  if (opened.kind === 'stream') {
    assert.deepEqual(opened.stream.layers, ['gzip']);
    assert.ok((await drain(opened.stream)).equals(rawBytes));
    await opened.stream.close();
  }
  // Plain bytes named .xz are just a raw image.
  const notXz = join(dir, 'plain.xz');
  copyFileSync(raw, notXz);
  const image = await openImage(notXz);
  assert.equal(image.format, 'raw');
  assert.equal(image.size, rawBytes.length);
  await image.close();
});

test('-f raw turns unwrapping off', async () => {
  const image = await openImage(compressed.get('xz')!, { format: 'raw' });
  assert.deepEqual(await readAll(image), readFileSync(compressed.get('xz')!));
  await image.close();
});

test('openImage stages compressed raw to a sparse temporary file, removed on close', async () => {
  for (const kind of ['xz', 'zstd'] as const) {
    const image = await openImage(compressed.get(kind)!, { tempDir: stageDir });
    try {
      assert.equal(image.format, 'raw');
      assert.equal(image.size, rawBytes.length);
      assert.ok((await readAll(image)).equals(rawBytes));
      // The zero run between the data was not written: the staged file has a hole there.
      const extents = await checkedExtents(image);
      assert.ok(extents.some((e) => e.zero && e.offset <= 1024 * 1024 && e.length >= 1024 * 1024));
      // Already unlinked: nothing is left behind even if the process is killed.
      assert.deepEqual(readdirSync(stageDir), []);
    } finally {
      await image.close();
    }
  }
});

test('nested wrappers (gzip inside xz) are unwrapped on the fly', async () => {
  const gz = compressed.get('gzip')!;
  const nested = await compress('xz', gz);
  const opened = await openStream(nested);
  assert.equal(opened.kind, 'stream');
  if (opened.kind === 'stream') {
    assert.deepEqual(opened.stream.layers, ['xz', 'gzip']);
    assert.ok((await drain(opened.stream)).equals(rawBytes));
    await opened.stream.close();
  }
});

test('a raw image that is not compressed opens as an image, not a stream', async () => {
  const opened = await openStream(raw);
  assert.equal(opened.kind, 'image');
  if (opened.kind === 'image') await opened.image.close();
});

test('zstd: several frames (small and large) and skippable frames', async () => {
  // Frame 1: large (streamed through fzstd); frame 2: small (native binding); then a
  // skippable frame. zstd concatenations decompress to the concatenated content.
  const part2 = join(dir, 'part2.bin');
  writeFileSync(part2, Buffer.alloc(70_000, 'second frame '));
  const z2 = await compress('zstd', part2);
  const skippable = Buffer.alloc(8 + 10);
  skippable.writeUInt32LE(0x184d2a5e, 0);
  skippable.writeUInt32LE(10, 4);
  const multi = join(dir, 'multi.zst');
  writeFileSync(
    multi,
    Buffer.concat([readFileSync(compressed.get('zstd')!), readFileSync(z2), skippable]),
  );
  const expected = Buffer.concat([rawBytes, readFileSync(part2)]);
  for (const accelerate of [false, true]) {
    const opened = await openStream(multi, { accelerate });
    assert.equal(opened.kind, 'stream');
    if (opened.kind === 'stream') {
      assert.ok((await drain(opened.stream)).equals(expected), `accelerate=${accelerate}`);
      await opened.stream.close();
    }
  }
});

test('closing a stream early stops the decompressor', async () => {
  for (const kind of ['xz', 'bzip2'] as const) {
    for (const how of HOWS) {
      await using(how, async (accelerate) => {
        const opened = await openStream(compressed.get(kind)!, { accelerate });
        assert.equal(opened.kind, 'stream');
        if (opened.kind !== 'stream') return;
        for await (const c of opened.stream.chunks()) {
          assert.ok(c.length > 0);
          break;
        }
        await opened.stream.close();
      });
    }
  }
});

test('qcow2 inside xz is staged (random access), and the staged file is removed', async () => {
  const q = join(dir, 'inner.qcow2');
  await qemuImg('create', '-f', 'qcow2', q, '16M');
  await qemuIo(q, ['write -P 0x33 1M 256k', 'write -P 0x44 15M 64k'], 'qcow2');
  const expected = join(dir, 'inner.qcow2.raw');
  await qemuImg('convert', '-O', 'raw', q, expected);
  const xz = await compress('xz', q);
  const misleading = join(dir, 'inner-qcow2.img');
  copyFileSync(xz, misleading);
  const opened = await openStream(misleading, { tempDir: stageDir });
  assert.equal(opened.kind, 'image');
  if (opened.kind !== 'image') return;
  try {
    assert.equal(opened.image.format, 'qcow2');
    assert.ok((await readAll(opened.image)).equals(readFileSync(expected)));
    assert.deepEqual(readdirSync(stageDir), []);
  } finally {
    await opened.image.close();
  }
  // A truncated qcow2.xz fails while staging and leaves nothing behind.
  const cut = join(dir, 'cut-qcow2.xz');
  const data = readFileSync(xz);
  writeFileSync(cut, data.subarray(0, data.length - 100));
  await assert.rejects(openImage(cut, { tempDir: stageDir }), { code: 'CORRUPT' });
  assert.deepEqual(readdirSync(stageDir), []);
});

test('a staging failure leaves no temporary file (truncated raw.xz via openImage)', async () => {
  const data = readFileSync(compressed.get('xz')!);
  const cut = join(dir, 'cut-stage.xz');
  writeFileSync(cut, data.subarray(0, data.length - 50));
  await assert.rejects(openImage(cut, { tempDir: stageDir }), { code: 'CORRUPT' });
  assert.deepEqual(readdirSync(stageDir), []);
});

test('stdin (-): compressed raw is a stream; staged for openImage and removed', () => {
  const child = new URL('./stdin-child.js', import.meta.url).pathname;
  const digest = createHash('sha256').update(rawBytes).digest('hex');
  const input = readFileSync(compressed.get('zstd')!);
  const stream = spawnSync(process.execPath, [child, 'stream'], { input });
  assert.equal(stream.stderr.toString(), '');
  assert.equal(stream.stdout.toString(), `stream zstd ${digest}\n`);
  const image = spawnSync(process.execPath, [child, 'image', stageDir], { input });
  assert.equal(image.stderr.toString(), '');
  assert.equal(image.stdout.toString(), `image raw ${digest}\n`);
  assert.deepEqual(readdirSync(stageDir), []);
});

test('bzip2 (js): output larger than the buffers, read slowly, arrives complete', async () => {
  // Regression: the legacy-stream adapter once dropped queued output at the end.
  const big = join(dir, 'big-text.raw');
  writeFileSync(big, Buffer.alloc(12 * 1024 * 1024, 'bzip2 backpressure '));
  const bz = await compress('bzip2', big);
  const opened = await openStream(bz, { accelerate: false });
  assert.equal(opened.kind, 'stream');
  if (opened.kind !== 'stream') return;
  let n = 0;
  for await (const c of opened.stream.chunks()) {
    n += c.length;
    await new Promise((r) => setTimeout(r, 1));
  }
  await opened.stream.close();
  assert.equal(n, 12 * 1024 * 1024);
});
