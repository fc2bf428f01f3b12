import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { test } from 'node:test';
import { SparseWriter } from '../../src/cache/sparse-writer.js';
import { WRITE_PIECE } from '../../src/io/file.js';

const MiB = 1024 * 1024;

/** A file handle whose calls finish when the test says so; it keeps what was written. */
function slowHandle() {
  const held: (() => void)[] = [];
  const data = new Map<number, Buffer>();
  let size = 0;
  const wait = () => new Promise<void>((r) => held.push(r));
  const handle = {
    write: async (buf: Buffer, offset: number, length: number, position: number) => {
      await wait();
      data.set(position, Buffer.from(buf.subarray(offset, offset + length)));
      size = Math.max(size, position + length);
      return { bytesWritten: length, buffer: buf };
    },
    truncate: async (n: number) => {
      await wait();
      size = n;
    },
  } as unknown as FileHandle;
  return { handle, held, data, size: () => size };
}

test('sparse writer: a slow disk does not stall the stream until 8 stages wait; order and data kept', async () => {
  const f = slowHandle();
  const w = new SparseWriter(f.handle, 0, 'test');
  const flushed: number[] = [];
  w.onFlushed = (p) => flushed.push(p);
  const chunk = randomBytes(MiB);
  let accepted = 0;
  // Writes that the disk does not answer: how many MiB go in before write() waits?
  for (;;) {
    const p = w.write(chunk);
    const done = await Promise.race([
      p.then(() => true),
      new Promise((r) => setImmediate(r, false)),
    ]);
    if (!done) {
      // Release the disk from here on and let everything finish.
      const pump = setInterval(() => {
        for (const r of f.held.splice(0)) r();
      }, 1);
      try {
        await p;
        await w.finish();
      } finally {
        clearInterval(pump);
      }
      break;
    }
    accepted++;
  }
  assert.ok(accepted >= 7, `only ${accepted} MiB accepted while the disk was busy`);
  assert.equal(f.size(), (accepted + 1) * MiB);
  assert.deepEqual(
    flushed,
    [...flushed].sort((a, b) => a - b),
    'flushed in order',
  );
  assert.equal(flushed.at(-1), (accepted + 1) * MiB);
  // Every stage is written in pieces of at most WRITE_PIECE, each holding its part of the chunk.
  let written = 0;
  for (const [pos, buf] of f.data) {
    assert.ok(buf.length <= WRITE_PIECE, `a write of ${buf.length} bytes at ${pos}`);
    const at = pos % MiB;
    assert.ok(buf.equals(chunk.subarray(at, at + buf.length)), `the bytes at ${pos}`);
    written += buf.length;
  }
  assert.equal(written, (accepted + 1) * MiB);
});
