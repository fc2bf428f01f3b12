/**
 * LocalFile.write issues a large buffer as several write calls of at most WRITE_PIECE bytes
 * (a 2 MiB buffered write costs the kernel a 2 MiB page-cache folio; see io/file.ts), and the
 * file still gets every byte, at the right offsets, with an odd length too.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalFile, WRITE_PIECE } from '../../src/io/file.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('a 2 MiB write reaches the kernel as calls of at most WRITE_PIECE bytes', async () => {
  const path = join(dir, 'pieces.raw');
  const file = await LocalFile.open(path, 'w+');
  // Every FileHandle shares one prototype: record the length of each write call.
  const probe = await open(path, 'r');
  const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => unknown };
  await probe.close();
  const original = proto.write;
  const lengths: number[] = [];
  proto.write = function (this: unknown, ...args: unknown[]) {
    lengths.push(args[2] as number);
    return original.apply(this, args);
  };
  const data = randomBytes(2 * 1024 * 1024 + 777);
  try {
    await file.write(data, 4096);
  } finally {
    proto.write = original;
    await file.close();
  }
  assert.ok(WRITE_PIECE <= 256 * 1024);
  assert.equal(Math.max(...lengths), WRITE_PIECE);
  assert.equal(
    lengths.reduce((a, b) => a + b, 0),
    data.length,
  );
  const back = readFileSync(path);
  assert.equal(back.length, 4096 + data.length);
  assert.ok(back.subarray(4096).equals(data));
  assert.ok(back.subarray(0, 4096).equals(Buffer.alloc(4096)));
});
