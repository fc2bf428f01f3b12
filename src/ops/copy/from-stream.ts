/**
 * One-pass copy of a sequential raw stream (a .xz/.gz/.zst/.bz2 wrapper's output) into a new
 * raw file: no staged copy. Chunks are written at their offsets as they arrive; aligned
 * blocks that read as zeroes are left as holes, so the output is as sparse as a converted
 * image; the file gets the stream's exact length at the end.
 */
import { AbortError, CorruptImageError } from '../../errors.js';
import type { ProgressListener } from '../../image/types.js';
import type { LocalFile } from '../../io/file.js';
import { isZeroChunk, type SequentialSource } from '../../sources/sequential.js';
import { classify } from './blocks.js';
import type { CopyResult } from './index.js';

export interface StreamCopyOptions {
  /** Zero detection granularity (like -S), default 4 KiB; 0 writes every byte. */
  sparseSize?: number;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

/** Copies every chunk of `stream` into `file` (a new, empty file); returns the byte counts. */
export async function copyStreamToFile(
  stream: SequentialSource,
  file: LocalFile,
  o: StreamCopyOptions = {},
): Promise<CopyResult> {
  const block = o.sparseSize ?? 4096;
  const result: CopyResult = { bytesRead: 0, bytesWritten: 0, bytesZeroed: 0, bytesSkipped: 0 };
  const total = stream.size;
  let pos = 0;
  for await (const chunk of stream.chunks()) {
    if (o.signal?.aborted) throw new AbortError('copy aborted');
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // A chunk the decoder already knows is zero stays a hole without being looked at.
    const runs =
      block > 0 && isZeroChunk(chunk)
        ? [{ start: 0, end: buf.length, kind: 'skip' as const }]
        : classify(buf, pos, block, null, true);
    for (const r of runs) {
      if (r.kind === 'data') {
        await file.write(buf.subarray(r.start, r.end), pos + r.start);
        result.bytesWritten += r.end - r.start;
      } else result.bytesSkipped += r.end - r.start;
    }
    pos += buf.length;
    result.bytesRead += buf.length;
    o.onProgress?.({ phase: 'copy', done: pos, total });
  }
  if (total !== undefined && pos !== total) {
    throw new CorruptImageError(
      `${stream.name}: stream ended after ${pos} bytes, ${total} were announced`,
    );
  }
  await file.truncate(pos);
  return result;
}
