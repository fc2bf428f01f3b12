/** The JS/WASM decoders: always available, no system tool needed (bzip2: unbzip2.ts). */
import { createRequire } from 'node:module';
import { createGunzip } from 'node:zlib';
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import { throughStream } from './streams.js';

const require = createRequire(import.meta.url);

/**
 * gzip through Node's zlib (faster than `gzip -dc`); concatenated members are read too, and
 * zero padding after the last one is ignored. Other bytes there are an error: `gzip -dc` also
 * exits non-zero for them (2, "trailing garbage ignored").
 */
export async function* gunzip(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* throughStream(input, createGunzip({ chunkSize: 1 << 20 }));
  } catch (err) {
    // Detection checked the first member's header: a bad magic can only follow a member.
    if ((err as { code?: string })?.code !== 'Z_DATA_ERROR') throw err;
    if ((err as Error).message !== 'incorrect header check') throw err;
    throw new CorruptImageError(
      'bytes after the last gzip member are not gzip data (trailing garbage; gzip -dc exits with status 2 for it too)',
    );
  }
}

interface XzModule {
  XzReadableStream: new (input: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>;
}

/** The dictionary size xz-decompress's WASM build accepts (xz-embedded's dict_max: 2^26). */
export const XZ_JS_DICT_LIMIT = 64 * 1024 * 1024;
/** xz-embedded's XZ_MEMLIMIT_ERROR, as the WASM build reports it. */
const MEMLIMIT = /failed with error code 4\b/;

/** xz through xz-decompress (xz-embedded compiled to WASM, streaming). */
export async function* unxz(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const { XzReadableStream } = require('xz-decompress') as XzModule;
  const source = ReadableStream.from(input) as ReadableStream<Uint8Array>;
  try {
    yield* new XzReadableStream(source) as unknown as AsyncIterable<Uint8Array>;
  } catch (err) {
    if (!MEMLIMIT.test(String((err as Error)?.message))) throw err;
    throw new UnsupportedFeatureError(
      `xz data uses a dictionary larger than the built-in decoder's memory limit of ${XZ_JS_DICT_LIMIT / 2 ** 20} MiB (xz -9 uses 64 MiB); install the xz tool, which diskpipe then uses, or recompress with a smaller dictionary`,
    );
  }
}
