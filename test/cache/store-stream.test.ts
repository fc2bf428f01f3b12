/**
 * storeStream (a decompressed download into the cache's raw form) writes on the calling thread
 * (LocalFile.writeBlocking): the result must still be the stream's bytes exactly, with zero
 * blocks left as holes and a stream that ends in zeroes at its full length. Checked with
 * qemu-img compare and map against a disk made by qemu-io.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { storeStream } from '../../src/cache/store-raw.js';
import type { SequentialSource } from '../../src/sources/sequential.js';
import { qemuDataRanges, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The file's bytes as a stream of `size`-byte chunks (a decoder's output). */
function streamOf(bytes: Buffer, size: number): SequentialSource {
  return {
    name: 'test stream',
    format: 'raw',
    size: undefined,
    layers: ['zstd'],
    untrusted: true,
    async *chunks() {
      for (let pos = 0; pos < bytes.length; pos += size) yield bytes.subarray(pos, pos + size);
    },
    close: async () => {},
  };
}

test('store stream: the bytes exactly, zero blocks as holes, trailing zeroes as length', async () => {
  const dir = tempDir();
  const src = sparseFile(join(dir, 'src.raw'), 12 * MiB);
  // Chunks of whole 4 KiB blocks, as the decoders give. Data across chunk boundaries, a lone 4 KiB block, an unaligned tail of data; zeroes last.
  await qemuIo(
    src,
    ['write -P 0x5a 1020k 2052k', 'write -P 0x11 6m 4k', 'write -P 0x77 9m 3k'],
    'raw',
  );
  const out = join(dir, 'out.raw');
  const stored = await storeStream(streamOf(readFileSync(src), 320 * KiB), out);
  await qemuImg('compare', '-q', '-f', 'raw', '-F', 'raw', src, out);
  assert.equal(stored.virtualSize, 12 * MiB);
  // Only the 4 KiB blocks holding data were written.
  assert.equal(stored.written, 2052 * KiB + 4 * KiB + 4 * KiB);
  assert.deepEqual(await qemuDataRanges(out), [
    [1020 * KiB, 3072 * KiB],
    [6 * MiB, 6 * MiB + 4 * KiB],
    [9 * MiB, 9 * MiB + 4 * KiB],
  ]);
});
