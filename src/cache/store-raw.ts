/**
 * Turns a pulled image into the cache's form: a sparse raw file plus its blkhash content
 * digest. Raw content arriving as a stream is written and hashed in one pass; anything else is
 * copied by the copy engine, which hands the buffers it reads to the hash (the written file is
 * never read again).
 */
import { RawImage } from '../formats/raw.js';
import type { Image } from '../image/types.js';
import { throwIfAborted } from '../io/abort.js';
import { LocalFile } from '../io/file.js';
import { checksumStream } from '../ops/checksum/index.js';
import { copyImage } from '../ops/copy/index.js';
import type { SequentialSource } from '../sources/sequential.js';
import { CopyPassHash } from './copy-pass-hash.js';

export interface StoredRaw {
  contentDigest: string;
  virtualSize: number;
  allocatedSize: number;
  /** Bytes of data written (zero blocks are holes, never written). */
  written: number;
}

export type StoreProgress = (
  phase: 'convert' | 'hash',
  done: number,
  total: number | undefined,
) => void;

export async function storeImage(
  image: Image,
  path: string,
  onProgress?: StoreProgress,
  signal?: AbortSignal,
): Promise<StoredRaw> {
  const file = await LocalFile.open(path, 'w+');
  const target = new RawImage(file);
  const hash = new CopyPassHash(image.size);
  try {
    await file.truncate(image.size);
    const copied = await copyImage(image, target, {
      targetIsZero: true,
      tap: hash,
      onProgress: (p) => onProgress?.('convert', p.done, p.total),
      ...(signal && { signal }),
    });
    await file.sync();
    return {
      contentDigest: hash.digest(),
      virtualSize: image.size,
      allocatedSize: await file.allocatedSize(),
      written: copied.bytesWritten,
    };
  } finally {
    await target.close();
  }
}

const BLOCK = 4096;
const ZERO_BLOCK = new Uint8Array(BLOCK);

export async function storeStream(
  stream: SequentialSource,
  path: string,
  onProgress?: StoreProgress,
  signal?: AbortSignal,
): Promise<StoredRaw> {
  const file = await LocalFile.open(path, 'w+');
  let position = 0;
  let written = 0;
  async function* writeThrough(): AsyncIterable<Uint8Array> {
    for await (const chunk of stream.chunks()) {
      throwIfAborted(signal, 'pull');
      written += await writeSparse(file, chunk, position);
      position += chunk.length;
      onProgress?.('convert', position, stream.size);
      yield chunk;
    }
  }
  try {
    const { digest } = await checksumStream(writeThrough());
    await file.truncate(position); // trailing zeroes stay a hole
    await file.sync();
    return {
      contentDigest: digest,
      virtualSize: position,
      allocatedSize: await file.allocatedSize(),
      written,
    };
  } finally {
    await file.close();
  }
}

/** Writes the non-zero 4 KiB blocks of `chunk`; zero blocks stay holes in the new file. */
async function writeSparse(file: LocalFile, chunk: Uint8Array, offset: number): Promise<number> {
  const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let written = 0;
  let runStart = -1;
  for (let pos = 0; ; pos += BLOCK) {
    const done = pos >= buf.length;
    const end = Math.min(pos + BLOCK, buf.length);
    const zero = done || buf.subarray(pos, end).equals(ZERO_BLOCK.subarray(0, end - pos));
    if (!zero && runStart < 0) runStart = pos;
    if (zero && runStart >= 0) {
      const run = buf.subarray(runStart, Math.min(pos, buf.length));
      await file.write(run, offset + runStart);
      written += run.length;
      runStart = -1;
    }
    if (done) return written;
  }
}
