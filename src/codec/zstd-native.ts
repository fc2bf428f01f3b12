/** The native zstd binding (@mongodb-js/zstd), loaded on first use. */
import { UnsupportedFeatureError } from '../errors.js';

type Decompress = (data: Buffer) => Promise<Buffer>;
let loading: Promise<Decompress> | undefined;

function load(): Promise<Decompress> {
  loading ??= import('@mongodb-js/zstd').then(
    (m) => m.decompress,
    (err: unknown) => {
      loading = undefined;
      throw new UnsupportedFeatureError(
        `zstd data needs @mongodb-js/zstd, which failed to load: ${(err as Error).message}`,
      );
    },
  );
  return loading;
}

/** Decompresses one whole zstd frame (asynchronously, on the libuv pool). */
export async function zstdDecompress(frame: Uint8Array): Promise<Buffer> {
  const decompress = await load();
  // The binding wants a Buffer; a view on shared memory is copied to a plain one first.
  const input =
    frame.buffer instanceof SharedArrayBuffer
      ? Buffer.from(frame)
      : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  return decompress(input);
}
