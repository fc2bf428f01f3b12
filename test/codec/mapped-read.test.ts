/**
 * readAndDecode with a file the decode worker maps (io/mapped-file.ts) instead of reading:
 * the same output as with reads (native calls off), a bad item is still named by index, and a
 * span past the end of the file is read (not mapped) and reported short.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import {
  acquireShared,
  type BatchItem,
  closeDecodePool,
  Flavour,
  readAndDecode,
} from '../../src/codec/engine.js';
import { setNativeEnabled } from '../../src/io/native.js';
import { tempDir } from '../helpers/peers.js';

const CS = 65536;
const dir = tempDir();
after(() => closeDecodePool());

/** A file: 100 bytes of junk, then `n` deflated clusters back to back; the batch items. */
function compressedFile(name: string, n: number) {
  const plain = Array.from({ length: n }, (_, i) => {
    const c = Buffer.alloc(CS, i + 1);
    randomBytes(500).copy(c, i * 11);
    return c;
  });
  const parts = plain.map((c) => deflateRawSync(c));
  const items: BatchItem[] = [];
  let at = 0;
  parts.forEach((z, i) => {
    items.push({ at, size: z.length, to: i * CS, length: CS, flavour: Flavour.Deflate });
    at += z.length;
  });
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([randomBytes(100), ...parts]));
  return { path, items, spanLength: at, want: Buffer.concat(plain) };
}

async function decodeFile(path: string, position: number, spanLength: number, items: BatchItem[]) {
  const fd = openSync(path, 'r');
  try {
    const dst = acquireShared(items.length * CS);
    const r = await readAndDecode(
      { fd, name: path },
      position,
      acquireShared(spanLength),
      items,
      dst,
    );
    return { ...r, dst: Buffer.from(dst) };
  } finally {
    closeSync(fd);
  }
}

test('mapped and read spans decode to the same clusters', async () => {
  const f = compressedFile('batch.bin', 12);
  for (const native of [true, false]) {
    setNativeEnabled(native);
    try {
      const r = await decodeFile(f.path, 100, f.spanLength, f.items);
      assert.equal(r.failure, undefined);
      assert.equal(r.bytesRead, f.spanLength);
      assert.ok(r.dst.equals(f.want), `native=${native}`);
    } finally {
      setNativeEnabled(true);
    }
  }
});

test('a bad item in a mapped span is named by index', async () => {
  const f = compressedFile('bad.bin', 6);
  const fd = openSync(f.path, 'r+');
  try {
    const junk = Buffer.alloc(8, 0xff);
    writeSync(fd, junk, 0, 8, 100 + f.items[3]!.at);
  } finally {
    closeSync(fd);
  }
  const r = await decodeFile(f.path, 100, f.spanLength, f.items);
  assert.equal(r.failure?.index, 3);
});

test('a span past the end of the file is read, not mapped: short', async () => {
  const f = compressedFile('short.bin', 4);
  const r = await decodeFile(f.path, 100, f.spanLength + 5000, f.items);
  assert.equal(r.bytesRead, f.spanLength);
});
