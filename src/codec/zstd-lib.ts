/**
 * The system's libzstd (libzstd.so.1, the library the `zstd` tool uses), called synchronously
 * through koffi: a frame decodes straight into the caller's buffer, with no per-call
 * allocation, no copy and no trip through the libuv pool (the npm binding costs ~80–100 µs
 * per call and returns a fresh buffer). Loaded once per thread; each decode worker keeps one
 * decompression context. libzstd verifies a frame's checksum when the frame carries one.
 * `zstdLib()` is null when the library, koffi or the native switch says no: callers then use
 * the npm binding (zstd-native.ts). .zst streams decode in a worker (sources/decompress/native-zstd.ts).
 */
import { isNativeEnabled } from '../io/native.js';
import { loadSystemLib, type NativeFunction } from '../io/system-lib.js';

/** libzstd's error codes that callers tell apart (ZSTD_ErrorCode, zstd_errors.h). */
export const ZstdErrorCode = {
  DstSizeTooSmall: 70,
} as const;

export interface ZstdLib {
  /** libzstd's version, e.g. "1.5.4". */
  version: string;
  /**
   * The length of the frame at the start of `src` (trailing bytes, such as qemu's sector
   * padding, are not part of it); throws ZstdError when `src` does not start with a whole frame.
   */
  frameSize(src: Uint8Array): number;
  /** Decodes the single frame `src` into `dst`; returns the bytes written or throws ZstdError. */
  decompressInto(src: Uint8Array, dst: Uint8Array): number;
}

/** A libzstd error: its message (ZSTD_getErrorName) and code (ZSTD_getErrorCode). */
export class ZstdError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

let lib: ZstdLib | null | undefined;
let why = '';

/** This thread's libzstd, or null (see zstdLibStatus for why). */
export function zstdLib(): ZstdLib | null {
  // The switch is read on every call: setNativeEnabled(false) after a first use still counts.
  if (!isNativeEnabled()) return null;
  if (lib === undefined) lib = bind();
  return lib;
}

/** Why zstdLib() is null ('' when it is not); for diagnostics and tests. */
export function zstdLibStatus(): string {
  if (!isNativeEnabled()) return 'disabled (DISKPIPE_NO_NATIVE=1 or setNativeEnabled(false))';
  zstdLib();
  return why;
}

function bind(): ZstdLib | null {
  const loaded = loadSystemLib(['libzstd.so.1', 'libzstd.so']);
  if (typeof loaded === 'string') {
    why = loaded;
    return null;
  }
  const { lib: so } = loaded;
  try {
    // size_t results above 2^53 (libzstd's error codes are -1..-120) come back as BigInt;
    // only ZSTD_isError needs to tell them apart, so they pass back into it unchanged.
    const f = (decl: string) => so.func(decl) as NativeFunction;
    const isError = f('unsigned int ZSTD_isError(size_t code)');
    const errorName = f('const char *ZSTD_getErrorName(size_t code)');
    const errorCode = f('int ZSTD_getErrorCode(size_t code)');
    const versionString = f('const char *ZSTD_versionString(void)');
    const createDCtx = f('void *ZSTD_createDCtx(void)');
    const findFrameSize = so.func('ZSTD_findFrameCompressedSize', 'size_t', [
      'void *',
      'size_t',
    ]) as NativeFunction;
    const decompressDCtx = so.func('ZSTD_decompressDCtx', 'size_t', [
      'void *',
      'void *',
      'size_t',
      'void *',
      'size_t',
    ]) as NativeFunction;

    const check = (r: unknown): number => {
      if (isError(r)) throw new ZstdError(String(errorName(r)), Number(errorCode(r)));
      return Number(r);
    };
    const dctx = createDCtx();
    if (!dctx) throw new Error('ZSTD_createDCtx failed');
    const binding: ZstdLib = {
      version: String(versionString()),
      frameSize: (src) => check(findFrameSize(src, src.length)),
      decompressInto: (src, dst) => check(decompressDCtx(dctx, dst, dst.length, src, src.length)),
    };
    why = '';
    return binding;
  } catch (err) {
    why = `libzstd: ${(err as Error).message}`;
    return null;
  }
}
