import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { SparseWriter } from '../../src/cache/sparse-writer.js';
import type { LocalFile } from '../../src/io/file.js';

const MiB = 1024 * 1024;

/** A file whose calls finish when the test says so; it keeps what was written. */
function slowHandle() {
  const held: (() => void)[] = [];
  const data = new Map<number, Buffer>();
  let size = 0;
  const wait = () => new Promise<void>((r) => held.push(r));
  const handle = {
    write: async (buf: Uint8Array, position: number) => {
      await wait();
      data.set(position, Buffer.from(buf));
      size = Math.max(size, position + buf.length);
    },
    truncate: async (n: number) => {
      await wait();
      size = n;
    },
  } as unknown as LocalFile;
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
    const p = w.write(chunk) ?? Promise.resolve();
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
  // Every write holds its part of the chunk (LocalFile splits it into pieces).
  let written = 0;
  for (const [pos, buf] of f.data) {
    const at = pos % MiB;
    assert.ok(buf.equals(chunk.subarray(at, at + buf.length)), `the bytes at ${pos}`);
    written += buf.length;
  }
  assert.equal(written, (accepted + 1) * MiB);
});

/** A file that keeps what was written, at once. */
function memoryHandle() {
  let file = Buffer.alloc(0);
  let truncates = 0;
  const handle = {
    write: async (buf: Uint8Array, position: number) => {
      if (file.length < position + buf.length)
        file = Buffer.concat([file, Buffer.alloc(position + buf.length - file.length)]);
      file.set(buf, position);
    },
    truncate: async (n: number) => {
      truncates++;
      file =
        n <= file.length
          ? file.subarray(0, n)
          : Buffer.concat([file, Buffer.alloc(n - file.length)]);
    },
  } as unknown as LocalFile;
  return { handle, file: () => file, truncates: () => truncates };
}

test('sparse writer: a reader sees every byte once, in order, from shared stages it holds until done', async () => {
  const start = 1000; // a resumed download: blocks follow file offsets, the first one is short
  const data = Buffer.concat([
    randomBytes(3 * MiB + 77),
    Buffer.alloc(2 * MiB),
    randomBytes(12_345),
  ]);
  const f = memoryHandle();
  const seen: Buffer[] = [];
  const held: (() => void)[] = [];
  let lent = 0;
  const w = new SparseWriter(f.handle, start, 'test', async (bytes) => {
    assert.ok(bytes.buffer instanceof SharedArrayBuffer, 'lent, not copied');
    lent++;
    const copy = Buffer.from(bytes);
    // Held a while: the stage must not change under the reader meanwhile.
    await new Promise<void>((r) => held.push(r));
    assert.ok(Buffer.from(bytes).equals(copy), 'a stage changed while its reader held it');
    seen.push(copy);
  });
  const pump = setInterval(() => {
    for (const r of held.splice(0)) r();
  }, 2);
  try {
    for (let pos = 0; pos < data.length; pos += 65_521) {
      const waiting = w.write(data.subarray(pos, pos + 65_521));
      if (waiting) await waiting;
    }
    await w.finish();
    while (seen.length < lent) await new Promise((r) => setTimeout(r, 2));
  } finally {
    clearInterval(pump);
  }
  assert.ok(Buffer.concat(seen).equals(data), 'the reader saw the stream exactly');
  assert.ok(f.file().subarray(start).equals(data), 'the file holds the stream');
  // Only the 4 KiB blocks (aligned to the file) wholly inside the zeroes are holes.
  const zeroFrom = start + 3 * MiB + 77;
  const holes = Math.floor((zeroFrom + 2 * MiB) / 4096) * 4096 - Math.ceil(zeroFrom / 4096) * 4096;
  assert.equal(w.written, data.length - holes, 'zero blocks skipped');
});

test('sparse writer: a reader is told only of bytes the file size covers, skipped zeroes included', async () => {
  // Data, zeroes, data, then zeroes to the end (a tar's end blocks after its member).
  const data = Buffer.concat([
    randomBytes(MiB),
    Buffer.alloc(3 * MiB),
    randomBytes(MiB + 512),
    Buffer.alloc(2 * MiB + 3584),
  ]);
  const f = memoryHandle();
  const w = new SparseWriter(f.handle, 0, 'test');
  const told: number[] = [];
  w.onFlushed = (position) => {
    // A reader woken now reads [0, position): past the file's end it would get a short read.
    assert.ok(position <= f.file().length, `told ${position}, file holds ${f.file().length}`);
    told.push(position);
  };
  for (let pos = 0; pos < data.length; pos += 65_536) {
    const waiting = w.write(data.subarray(pos, pos + 65_536));
    if (waiting) await waiting;
  }
  await w.finish();
  assert.equal(told.at(-1), data.length);
  assert.ok(f.file().equals(data));
});

test('sparse writer: long zero runs move the size forward now and then, not once per stage', async () => {
  // 1 MiB of data, 40 MiB of zeroes, 1 MiB of data: a raw disk image's sparse middle.
  const data = Buffer.concat([randomBytes(MiB), Buffer.alloc(40 * MiB), randomBytes(MiB)]);
  const f = memoryHandle();
  const w = new SparseWriter(f.handle, 0, 'test');
  let told = 0;
  w.onFlushed = (position) => {
    assert.ok(position <= f.file().length, `told ${position}, file holds ${f.file().length}`);
    told = position;
  };
  for (let pos = 0; pos < data.length; pos += 256 * 1024) {
    const waiting = w.write(data.subarray(pos, pos + 256 * 1024));
    if (waiting) await waiting;
  }
  await w.finish();
  assert.equal(told, data.length);
  assert.ok(f.file().equals(data));
  // Each extension is a thread-pool round trip holding up the next write (one per 1 MiB
  // stage was 40 here); one per 8 MiB of zeroes, plus the final size.
  assert.ok(f.truncates() <= 7, `${f.truncates()} truncate calls`);
});
