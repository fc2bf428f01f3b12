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
import { CopyPassHash, type PacedTap } from './copy-pass-hash.js';
import { EarlyWriteback } from './early-writeback.js';
import { copyInHostOrder, hasMapping } from './host-order-copy.js';
import { writeSparse } from './sparse-write.js';

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
  /** 'host': copy in the order the format stores data (an image still downloading). */
  order: 'guest' | 'host' = 'guest',
): Promise<StoredRaw> {
  const file = await LocalFile.open(path, 'w+');
  const target = new RawImage(file);
  const hash = new CopyPassHash(image.size);
  const writeback = new EarlyWriteback(file);
  // The hash sees every data item as it is written: it counts them for the writeback too.
  const tap: PacedTap = {
    data: (buf, offset) => {
      hash.data(buf, offset);
      writeback.wrote(buf.length);
    },
    dataShared: (buf, offset) => {
      writeback.wrote(buf.length);
      return hash.dataShared(buf, offset);
    },
    blockSize: hash.blockSize,
    zero: (offset, length) => hash.zero(offset, length),
    room: () => hash.room(),
  };
  try {
    await file.truncate(image.size);
    const copied =
      order === 'host' && hasMapping(image)
        ? await copyInHostOrder(
            image,
            file,
            tap,
            (done, total) => onProgress?.('convert', done, total),
            signal,
          )
        : await copyImage(image, target, {
            targetIsZero: true,
            // As convert does: a thread-pool round trip per 256 KiB write cost more CPU than
            // the copy into the page cache.
            blockingWrites: true,
            tap,
            onProgress: (p) => onProgress?.('convert', p.done, p.total),
            ...(signal && { signal }),
          });
    await writeback.finish();
    // The last hash batches and the last writeback overlap.
    const [contentDigest] = await Promise.all([hash.digest(), file.sync()]);
    return {
      contentDigest,
      virtualSize: image.size,
      allocatedSize: await file.allocatedSize(),
      written: copied.bytesWritten,
    };
  } finally {
    await target.close();
  }
}

export async function storeStream(
  stream: SequentialSource,
  path: string,
  onProgress?: StoreProgress,
  signal?: AbortSignal,
): Promise<StoredRaw> {
  const file = await LocalFile.open(path, 'w+');
  const writeback = new EarlyWriteback(file);
  let position = 0;
  let written = 0;
  async function* writeThrough(): AsyncIterable<Uint8Array> {
    for await (const chunk of stream.chunks()) {
      throwIfAborted(signal, 'pull');
      const n = await writeSparse(file, chunk, position, true);
      written += n;
      writeback.wrote(n);
      position += chunk.length;
      onProgress?.('convert', position, stream.size);
      yield chunk;
    }
  }
  try {
    const { digest } = await checksumStream(writeThrough());
    await file.truncate(position); // trailing zeroes stay a hole
    await writeback.finish();
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
