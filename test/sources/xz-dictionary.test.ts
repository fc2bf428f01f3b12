import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { setNativeEnabled } from '../../src/io/native.js';
import type { OpenOptions } from '../../src/open.js';
import { openStream } from '../../src/open-stream.js';
import type { SequentialSource } from '../../src/sources/sequential.js';
import { diskpipe, run, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const raw = join(dir, 'big-dict.raw');
const data = randomBytes(100_000);
writeFileSync(raw, data);
// A valid .xz whose dictionary (256 MiB) is over the built-in decoder's limit.
await run('xz', ['-k', '-f', '-T1', '--lzma2=preset=0,dict=256MiB', raw]);

async function drain(stream: SequentialSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream.chunks()) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function readXz(path: string, opts: OpenOptions): Promise<Buffer> {
  const opened = await openStream(path, opts);
  assert.equal(opened.kind, 'stream');
  if (opened.kind !== 'stream') return Buffer.alloc(0);
  try {
    return await drain(opened.stream);
  } finally {
    await opened.stream.close();
  }
}

/**
 * A hostile .xz: a valid file whose block header is rewritten to ask for a
 * dictionary of 3 GiB, with the header CRC32 fixed so only the size is wrong.
 */
function hugeDictionary(path: string): string {
  const xz = Buffer.from(readFileSync(path));
  const start = 12; // after the stream header
  const size = (xz[start]! + 1) * 4;
  const lzma2 = xz.subarray(start, start + size).indexOf(Buffer.from([0x21, 0x01]));
  assert.ok(lzma2 > 0, 'LZMA2 filter flags in the block header');
  xz[start + lzma2 + 2] = 39; // dictionary size code 39: 3 GiB
  xz.writeUInt32LE(crc32(xz.subarray(start, start + size - 4)), start + size - 4);
  const out = join(dir, 'huge-dict.raw.xz');
  writeFileSync(out, xz);
  return out;
}

test('xz (js): a dictionary over the built-in decoder limit names the limit, not corruption', async () => {
  await assert.rejects(
    readXz(`${raw}.xz`, { accelerate: false }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'UNSUPPORTED', err.message);
      assert.match(err.message, /big-dict\.raw.*dictionary larger than .* memory limit of 64 MiB/);
      assert.doesNotMatch(err.message, /corrupt|error code/);
      return true;
    },
  );
});

test('xz (liblzma): memory is bounded by a limit that names itself and can be raised', async () => {
  // 256 MiB of dictionary is over the default limit: a clean error, nothing allocated.
  await assert.rejects(readXz(`${raw}.xz`, {}), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNSUPPORTED', err.message);
    assert.match(
      err.message,
      /big-dict\.raw\.xz: xz data needs 257 MiB of memory .* limit of 256 MiB/,
    );
    return true;
  });
  // Raised, the same file decodes (the dictionary is only touched as far as the data goes).
  assert.ok((await readXz(`${raw}.xz`, { xzMemoryLimit: 300 * 2 ** 20 })).equals(data));
});

test('xz (liblzma): a hostile header asking for a 3 GiB dictionary is refused cleanly', async () => {
  const hostile = hugeDictionary(`${raw}.xz`);
  const rss = process.memoryUsage().rss;
  await assert.rejects(readXz(hostile, {}), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNSUPPORTED', err.message);
    assert.match(
      err.message,
      /huge-dict\.raw\.xz: xz data needs 3073 MiB of memory .* limit of 256 MiB/,
    );
    return true;
  });
  // Refused before allocating: far less than the dictionary was ever resident.
  assert.ok(process.memoryUsage().rss - rss < 256 * 2 ** 20);
  // The xz tool and the WASM decoder also refuse it, each in its own words.
  await assert.rejects(readXz(hostile, { accelerate: false }), { code: 'UNSUPPORTED' });
});

test('xz (tool): used when the library is off; it has no dictionary limit', async () => {
  setNativeEnabled(false);
  try {
    assert.ok((await readXz(`${raw}.xz`, {})).equals(data));
  } finally {
    setNativeEnabled(true);
  }
});

test('xz (liblzma, CLI): the limit is one line naming DISKPIPE_XZ_MEMLIMIT, which raises it', () => {
  const out = join(dir, 'out.raw');
  const refused = diskpipe(['convert', `${raw}.xz`, out]);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /^diskpipe: .*limit of 256 MiB \(DISKPIPE_XZ_MEMLIMIT=SIZE/);
  assert.equal(refused.stderr.trim().split('\n').length, 1);
  const raised = diskpipe(['convert', `${raw}.xz`, out], { env: { DISKPIPE_XZ_MEMLIMIT: '300M' } });
  assert.equal(raised.status, 0, raised.stderr);
  assert.ok(readFileSync(out).equals(data));
});
