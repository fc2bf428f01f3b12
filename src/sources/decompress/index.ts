/**
 * Decompression of .gz/.xz/.zst/.bz2 streams, detected by magic. The JS/WASM decoders always
 * work. Accelerators, when present, run instead (`accelerate: false` turns them all off; the
 * CLI: DISKPIPE_NO_ACCEL=1): first the system's liblzma/libbz2 in a worker thread (no extra
 * process, no pipe copy, zero runs found on the worker; off with the native switch,
 * DISKPIPE_NO_NATIVE=1), else the system's `xz`/`zstd`/`bzip2` tool.
 */

import { zstdLib } from '../../codec/zstd-lib.js';
import {
  CorruptImageError,
  DiskpipeError,
  ioError,
  UnsupportedFeatureError,
} from '../../errors.js';
import { gunzip, unxz } from './codecs.js';
import type { Compression } from './detect.js';
import { decodeNative, nativeLibrary } from './native.js';
import { findOnPath, ownedChunks, spawnDecompressor, ToolError } from './streams.js';
import { unbzip2 } from './unbzip2.js';
import { watchInput } from './watched-input.js';
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

/** Which decoder `decompress` uses ('lib:liblzma.so.5', 'tool:/usr/bin/xz', 'libzstd' or 'js'). */
export function decoderFor(kind: Compression, opts: DecompressOptions = {}): string {
  const lib = library(kind, opts);
  if (lib) return `lib:${lib}`;
  const tool = accelerator(kind, opts);
  if (tool) return `tool:${tool}`;
  return kind === 'zstd' && zstdLib() ? 'libzstd' : 'js';
}

function library(kind: Compression, opts: DecompressOptions): string | undefined {
  if (opts.accelerate === false || (kind !== 'xz' && kind !== 'bzip2')) return undefined;
  return nativeLibrary(kind);
}

function accelerator(kind: Compression, opts: DecompressOptions): string | undefined {
  // The system's libzstd in this process beats the zstd tool behind a pipe (measured: about
  // half the CPU time: no pipe copy, no second process).
  if (kind === 'zstd' && zstdLib()) return undefined;
  const wanted = opts.accelerate ?? true;
  const name = TOOLS[kind];
  return wanted && name ? findOnPath(name) : undefined;
}

/**
 * The plain bytes of a compressed stream. Failures of the decoder become CorruptImageError
 * naming `label`; failures of the input (a network error...) pass through unchanged.
 */
export async function* decompress(
  kind: Compression,
  input: AsyncIterable<Uint8Array>,
  label: string,
  opts: DecompressOptions = {},
): AsyncGenerator<Uint8Array> {
  const lib = library(kind, opts);
  const tool = lib ? undefined : accelerator(kind, opts);
  // The decoders rethrow their input's errors; remember which error came from the input, so
  // a missing file or a network error is not reported as corrupt data.
  const source = watchInput(input);
  const watched = source.chunks;
  const output =
    lib && (kind === 'xz' || kind === 'bzip2')
      ? decodeNative(kind, watched, {
          ...(opts.xzMemoryLimit !== undefined && { memoryLimit: opts.xzMemoryLimit }),
        })
      : tool
        ? spawnDecompressor(tool, ownedChunks(watched))
        : DECODERS[kind](ownedChunks(watched));
  let produced = 0;
  try {
    for await (const chunk of output) {
      produced += chunk.length;
      yield chunk;
    }
  } catch (err) {
    const inputFailure = source.failure();
    if (inputFailure) throw inputError(inputFailure.err, label);
    if (err instanceof UnsupportedFeatureError)
      throw new UnsupportedFeatureError(`${label}: ${err.message}`);
    if (err instanceof DiskpipeError && !(err instanceof CorruptImageError)) throw err;
    const why = err instanceof ToolError ? `${tool}: ${err.message}` : (err as Error)?.message;
    throw new CorruptImageError(
      `${label}: ${kind} data is corrupt or truncated (after ${produced} bytes): ${why}`,
    );
  } finally {
    source.close();
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
