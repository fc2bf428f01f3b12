/**
 * Decompression of .gz/.xz/.zst/.bz2 streams, detected by magic. The JS/WASM decoders always
 * work. Accelerators, when present, run instead (`accelerate: false` turns them all off; the
 * CLI: DISKPIPE_NO_ACCEL=1): first the system's liblzma/libbz2 in a worker thread (no extra
 * process, no pipe copy, zero runs found on the worker; off with the native switch,
 * DISKPIPE_NO_NATIVE=1), else the system's `xz`/`zstd`/`bzip2` tool. .zst streams decode on
 * libzstd in the same kind of worker whenever native calls are on (measured: half the CPU
 * of the `zstd` tool behind a pipe), whatever `accelerate` says.
 */

import {
  CorruptImageError,
  DiskpipeError,
  ioError,
  UnsupportedFeatureError,
} from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { readSequential } from '../sequential.js';
import { gunzip, unxz } from './codecs.js';
import type { Compression } from './detect.js';
import { decodeNative, nativeLibrary } from './native.js';
import { findOnPath, ownedChunks, spawnDecompressor, ToolError } from './streams.js';
import { unbzip2 } from './unbzip2.js';
import { type WatchedInput, watchInput } from './watched-input.js';
import { unzstd } from './zstd.js';

export { type Compression, DETECT_BYTES, detectCompression, SUFFIX } from './detect.js';

export { DEFAULT_XZ_MEMORY_LIMIT } from './native.js';

export interface DecompressOptions {
  /**
   * Use the system's library or tool when installed (default: yes, unless DISKPIPE_NO_ACCEL=1).
   */
  accelerate?: boolean;
  /** Memory the liblzma decoder may use (default 256 MiB; DISKPIPE_XZ_MEMLIMIT in the CLI). */
  xzMemoryLimit?: number;
}

const TOOLS: Partial<Record<Compression, string>> = { xz: 'xz', zstd: 'zstd', bzip2: 'bzip2' };

/** Which decoder `decompress` uses ('lib:liblzma.so.5', 'lib:libzstd.so.1', 'tool:/usr/bin/xz' or 'js'). */
export function decoderFor(kind: Compression, opts: DecompressOptions = {}): string {
  const lib = library(kind, opts);
  if (lib) return `lib:${lib}`;
  const tool = accelerator(kind, opts);
  if (tool) return `tool:${tool}`;
  return 'js';
}

function library(kind: Compression, opts: DecompressOptions): string | undefined {
  // libzstd runs whenever native calls are on: the built-in alternative (the npm binding and
  // fzstd) is slower and, unlike liblzma against WASM xz, not the one to measure against.
  if (kind === 'zstd') return nativeLibrary(kind);
  if (opts.accelerate === false || (kind !== 'xz' && kind !== 'bzip2')) return undefined;
  return nativeLibrary(kind);
}

function accelerator(kind: Compression, opts: DecompressOptions): string | undefined {
  const wanted = opts.accelerate ?? true;
  const name = TOOLS[kind];
  return wanted && name ? findOnPath(name) : undefined;
}

/**
 * The plain bytes of a compressed stream: chunks, or a random-access source read from start
 * to end (the library decoders then read it straight into their transfer buffers). Failures
 * of the decoder become CorruptImageError naming `label`; failures of the input (a network
 * error...) pass through unchanged.
 */
export async function* decompress(
  kind: Compression,
  input: AsyncIterable<Uint8Array> | ByteSource,
  label: string,
  opts: DecompressOptions = {},
): AsyncGenerator<Uint8Array> {
  const lib = library(kind, opts);
  const tool = lib ? undefined : accelerator(kind, opts);
  // The decoders rethrow their input's errors; remember which error came from the input, so
  // a missing file or a network error is not reported as corrupt data.
  let inputFailure: { err: unknown } | undefined;
  const source: ByteSource | undefined =
    Symbol.asyncIterator in input
      ? undefined
      : {
          name: input.name,
          size: input.size,
          read: (buf, offset) =>
            input.read(buf, offset).catch((err) => {
              inputFailure = { err };
              return Promise.reject(err);
            }),
          close: () => input.close(),
        };
  const native = lib && kind !== 'gzip';
  // A library decoder reads a source itself; every other path reads chunks, watched.
  const watched =
    native && source
      ? undefined
      : watchInput(source ? readSequential(source) : (input as AsyncIterable<Uint8Array>));
  const output = native
    ? decodeNative(kind, source ?? (watched as WatchedInput).chunks, {
        ...(opts.xzMemoryLimit !== undefined && { memoryLimit: opts.xzMemoryLimit }),
      })
    : tool
      ? spawnDecompressor(tool, ownedChunks((watched as WatchedInput).chunks))
      : DECODERS[kind](ownedChunks((watched as WatchedInput).chunks));
  let produced = 0;
  try {
    for await (const chunk of output) {
      produced += chunk.length;
      yield chunk;
    }
  } catch (err) {
    const failure = inputFailure ?? watched?.failure();
    if (failure) throw inputError(failure.err, label);
    if (err instanceof UnsupportedFeatureError)
      throw new UnsupportedFeatureError(`${label}: ${err.message}`);
    if (err instanceof DiskpipeError && !(err instanceof CorruptImageError)) throw err;
    const why = err instanceof ToolError ? `${tool}: ${err.message}` : (err as Error)?.message;
    throw new CorruptImageError(
      `${label}: ${kind} data is corrupt or truncated (after ${produced} bytes): ${why}`,
    );
  } finally {
    watched?.close();
  }
}

/** An error of the input stream: a DiskpipeError as it is, a system error naming `label`. */
function inputError(err: unknown, label: string): DiskpipeError {
  const syscall = (err as NodeJS.ErrnoException)?.syscall;
  return ioError(err, syscall === 'open' ? `cannot open ${label}` : `read error on ${label}`);
}

/** The built-in decoder of each compression (a system tool, when found, runs instead). */
const DECODERS: Record<
  Compression,
  (input: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>
> = { gzip: gunzip, xz: unxz, zstd: unzstd, bzip2: unbzip2 };
