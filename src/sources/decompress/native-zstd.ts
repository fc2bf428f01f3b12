/**
 * .zst through the system's libzstd (koffi) in the decode worker: ZSTD_decompressStream reads
 * concatenated and skippable frames itself and verifies each frame's checksum. The window
 * (decoder memory) is bounded by ZSTD_d_windowLogMax, so a hostile header fails cleanly
 * instead of allocating. The input must end exactly at the end of a frame.
 */
import type { NativeFunction, SystemLib } from '../../io/system-lib.js';
import {
  bindOnce,
  loadBound,
  NativeDecodeError,
  type NativeDecoder,
  type NativeStep,
  type StreamStruct,
  structIn,
} from './native-codec.js';

export const ZSTD_NAMES = ['libzstd.so.1', 'libzstd.1.dylib', 'libzstd.so'] as const;

/** Largest window accepted: 2^28 = 256 MiB, as the JS decoder (zstd's own default is 2^27). */
export const ZSTD_WINDOW_LOG_MAX = 28;
/** ZSTD_d_windowLogMax (ZSTD_dParameter 100). */
const D_WINDOW_LOG_MAX = 100;

/** ZSTD_ErrorCode values (zstd_errors.h) told apart from plain corruption. */
const WINDOW_TOO_LARGE = 16;
const DICTIONARY_WRONG = 32;
const CHECKSUM_WRONG = 22;
const MEMORY_ALLOCATION = 64;

// ZSTD_inBuffer and ZSTD_outBuffer ({ pointer, size_t size, size_t pos }), side by side.
const IN = 0;
const OUT = 24;
const BUFFERS_BYTES = 48;

interface ZstdFunctions {
  createDCtx: NativeFunction;
  freeDCtx: NativeFunction;
  setParameter: NativeFunction;
  decompressStream: NativeFunction;
  isError: NativeFunction;
  errorName: NativeFunction;
  errorCode: NativeFunction;
}

const bind = bindOnce(
  ({ lib }): ZstdFunctions => ({
    createDCtx: lib.func('void *ZSTD_createDCtx(void)') as NativeFunction,
    freeDCtx: lib.func('size_t ZSTD_freeDCtx(void *dctx)') as NativeFunction,
    setParameter: lib.func(
      'size_t ZSTD_DCtx_setParameter(void *dctx, int param, int value)',
    ) as NativeFunction,
    decompressStream: lib.func(
      'size_t ZSTD_decompressStream(void *zds, uint64_t output, uint64_t input)',
    ) as NativeFunction,
    isError: lib.func('unsigned int ZSTD_isError(size_t code)') as NativeFunction,
    errorName: lib.func('const char *ZSTD_getErrorName(size_t code)') as NativeFunction,
    errorCode: lib.func('int ZSTD_getErrorCode(size_t code)') as NativeFunction,
  }),
);

/** libzstd, or why it cannot be used. */
export function loadZstd(): SystemLib | string {
  return loadBound(ZSTD_NAMES, bind);
}

export class ZstdDecoder implements NativeDecoder {
  private readonly f: ZstdFunctions;
  private readonly buffers: StreamStruct;
  private ctx: unknown;
  /** libzstd's hint after the last call: 0 when a frame has just ended (all flushed). */
  private hint = 0;
  private sawInput = false;

  constructor(sys: SystemLib, windowLogMax = ZSTD_WINDOW_LOG_MAX) {
    this.f = bind(sys);
    this.buffers = structIn(sys, BUFFERS_BYTES);
    this.ctx = this.f.createDCtx();
    if (!this.ctx) throw new NativeDecodeError('internal', 'ZSTD_createDCtx failed');
    try {
      this.check(this.f.setParameter(this.ctx, D_WINDOW_LOG_MAX, windowLogMax));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  step(
    input: bigint,
    inputLength: number,
    output: bigint,
    outputLength: number,
    finish: boolean,
  ): NativeStep {
    if (!this.ctx) throw new NativeDecodeError('internal', 'zstd decoder used after close');
    if (inputLength > 0) this.sawInput = true;
    if (finish && inputLength === 0 && this.hint === 0) {
      // A frame ended with the input; one more call would only ask for the next frame's header.
      if (!this.sawInput) throw new NativeDecodeError('corrupt', 'zstd data is empty');
      return { used: 0, made: 0, end: true };
    }
    const v = this.buffers.view;
    const at = this.buffers.address;
    v.setBigUint64(IN, input, true);
    v.setBigUint64(IN + 8, BigInt(inputLength), true);
    v.setBigUint64(IN + 16, 0n, true);
    v.setBigUint64(OUT, output, true);
    v.setBigUint64(OUT + 8, BigInt(outputLength), true);
    v.setBigUint64(OUT + 16, 0n, true);
    this.hint = this.check(this.f.decompressStream(this.ctx, at + BigInt(OUT), at + BigInt(IN)));
    const used = Number(v.getBigUint64(IN + 16, true));
    const made = Number(v.getBigUint64(OUT + 16, true));
    if (finish && used === inputLength) {
      if (this.hint === 0) return { used, made, end: true };
      if (made === 0 && outputLength > 0) {
        throw new NativeDecodeError('truncated', 'zstd data is truncated (it ends inside a frame)');
      }
    }
    return { used, made, end: false };
  }

  close(): void {
    if (!this.ctx) return;
    this.f.freeDCtx(this.ctx);
    this.ctx = undefined;
  }

  /** libzstd's size_t result, or the failure it encodes (error codes come back as BigInt). */
  private check(r: unknown): number {
    if (typeof r === 'bigint' && this.f.isError(r)) {
      throw failure(Number(this.f.errorCode(r)), String(this.f.errorName(r)));
    }
    return Number(r);
  }
}

function failure(code: number, name: string): NativeDecodeError {
  switch (code) {
    case WINDOW_TOO_LARGE:
      return new NativeDecodeError(
        'memory-limit',
        `zstd frame needs a window larger than ${2 ** (ZSTD_WINDOW_LOG_MAX - 20)} MiB (${name})`,
      );
    case CHECKSUM_WRONG:
      // The words of the other decoders, which scripts and tests may look for.
      return new NativeDecodeError('corrupt', 'zstd frame checksum does not match its content');
    case DICTIONARY_WRONG:
      return new NativeDecodeError('unsupported', `zstd frames that need a dictionary (${name})`);
    case MEMORY_ALLOCATION:
      return new NativeDecodeError('internal', `libzstd could not allocate memory (${name})`);
    default:
      return new NativeDecodeError('corrupt', `zstd data is corrupt: ${name}`);
  }
}
