import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStream } from '../../src/sources/open-stream.js';
import type { SequentialSource } from '../../src/sources/sequential.js';
import { run, tempDir } from '../helpers/peers.js';

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

async function readXz(accelerate: boolean): Promise<Buffer> {
  const opened = await openStream(`${raw}.xz`, { accelerate });
  assert.equal(opened.kind, 'stream');
  if (opened.kind !== 'stream') return Buffer.alloc(0);
  try {
    return await drain(opened.stream);
  } finally {
    await opened.stream.close();
  }
}

test('xz: a dictionary over the built-in decoder limit names the limit, not corruption', async () => {
  await assert.rejects(readXz(false), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNSUPPORTED', err.message);
    assert.match(err.message, /big-dict\.raw.*dictionary larger than .* memory limit of 64 MiB/);
    assert.doesNotMatch(err.message, /corrupt|error code/);
    return true;
  });
  // The xz tool has no such limit.
  assert.ok((await readXz(true)).equals(data));
});
