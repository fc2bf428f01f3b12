/**
 * .xz through the system's liblzma (koffi): lzma_stream_decoder (or lzma_stream_decoder_mt for
 * files made of several blocks, as `xz -T0` writes them) with LZMA_CONCATENATED, so
 * concatenated .xz streams decode like `xz -dc`. Memory is bounded by a memlimit: a stream
 * that needs more (a hostile or huge dictionary) fails cleanly instead of allocating.
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

export const LZMA_NAMES = ['liblzma.so.5', 'liblzma.5.dylib', 'liblzma.so'] as const;

const LZMA_RUN = 0;
const LZMA_FINISH = 3;
const LZMA_CONCATENATED = 0x08;
const LZMA_OK = 0;
const LZMA_STREAM_END = 1;

/** lzma_ret values → what went wrong (every value lzma_code can return without TELL_* flags). */
const FAILURES: Record<number, [NativeDecodeError['failure'], string]> = {
  2: ['corrupt', 'unexpected LZMA_NO_CHECK'],
  3: ['unsupported', 'the integrity check type is not supported (LZMA_UNSUPPORTED_CHECK)'],
  4: ['internal', 'unexpected LZMA_GET_CHECK'],
  5: ['internal', 'liblzma could not allocate memory (LZMA_MEM_ERROR)'],
  6: ['memory-limit', 'memory limit reached (LZMA_MEMLIMIT_ERROR)'],
  7: ['corrupt', 'not in the .xz format (LZMA_FORMAT_ERROR)'],
  8: ['corrupt', 'invalid or unsupported options in the header (LZMA_OPTIONS_ERROR)'],
  9: ['corrupt', 'compressed data is corrupt (LZMA_DATA_ERROR)'],
  10: ['truncated', 'compressed data ends too early (LZMA_BUF_ERROR)'],
  11: ['internal', 'liblzma reported a programming error (LZMA_PROG_ERROR)'],
  12: ['internal', 'unexpected LZMA_SEEK_NEEDED'],
};

// lzma_stream (lzma/base.h): the fields used here, on 64-bit platforms.
const STREAM_BYTES = 136;
const NEXT_IN = 0;
const AVAIL_IN = 8;
const NEXT_OUT = 24;
const AVAIL_OUT = 32;
// lzma_mt (lzma/container.h), 128 bytes.
const MT_BYTES = 128;
const MT_FLAGS = 0;
const MT_THREADS = 4;
const MT_MEMLIMIT_THREADING = 64;
const MT_MEMLIMIT_STOP = 72;

interface LzmaFunctions {
  code: NativeFunction;
  end: NativeFunction;
  memusage: NativeFunction;
  decoder: NativeFunction;
  decoderMt: NativeFunction | undefined;
}

const bind = bindOnce(({ lib }): LzmaFunctions => {
  let decoderMt: NativeFunction | undefined;
  try {
    decoderMt = lib.func(
      'int lzma_stream_decoder_mt(uint64_t strm, uint64_t options)',
    ) as NativeFunction;
  } catch {
    decoderMt = undefined; // liblzma < 5.4
  }
  return {
    code: lib.func('int lzma_code(uint64_t strm, int action)') as NativeFunction,
    end: lib.func('void lzma_end(uint64_t strm)') as NativeFunction,
    memusage: lib.func('uint64_t lzma_memusage(uint64_t strm)') as NativeFunction,
    decoder: lib.func(
      'int lzma_stream_decoder(uint64_t strm, uint64_t memlimit, uint32_t flags)',
    ) as NativeFunction,
    decoderMt,
  };
});

/** liblzma, or why it cannot be used. */
export function loadLzma(): SystemLib | string {
  return loadBound(LZMA_NAMES, bind);
}

export class LzmaDecoder implements NativeDecoder {
  private readonly f: LzmaFunctions;
  private readonly strm: StreamStruct;
  private open = true;
  private noProgress = false;

  /** `threads` > 1 decodes the blocks of multi-block files in parallel (liblzma ≥ 5.4). */
  constructor(
    sys: SystemLib,
    private readonly memoryLimit: number,
    threads: number,
  ) {
    this.f = bind(sys);
    this.strm = structIn(sys, STREAM_BYTES);
    let ret: number;
    if (threads > 1 && this.f.decoderMt) {
      const mt = structIn(sys, MT_BYTES);
      mt.view.setUint32(MT_FLAGS, LZMA_CONCATENATED, true);
      mt.view.setUint32(MT_THREADS, threads, true);
      // Both limits the same: fewer threads never, more memory never (a clean error instead).
      mt.view.setBigUint64(MT_MEMLIMIT_THREADING, BigInt(memoryLimit), true);
      mt.view.setBigUint64(MT_MEMLIMIT_STOP, BigInt(memoryLimit), true);
      ret = this.f.decoderMt(this.strm.address, mt.address) as number;
    } else {
      ret = this.f.decoder(this.strm.address, BigInt(memoryLimit), LZMA_CONCATENATED) as number;
    }
    if (ret !== LZMA_OK) {
      this.open = false;
      throw failure(ret, 0, memoryLimit);
    }
  }

  step(
    input: bigint,
    inputLength: number,
    output: bigint,
    outputLength: number,
    finish: boolean,
  ): NativeStep {
    const v = this.strm.view;
    v.setBigUint64(NEXT_IN, input, true);
    v.setBigUint64(AVAIL_IN, BigInt(inputLength), true);
    v.setBigUint64(NEXT_OUT, output, true);
    v.setBigUint64(AVAIL_OUT, BigInt(outputLength), true);
    const ret = this.f.code(this.strm.address, finish ? LZMA_FINISH : LZMA_RUN) as number;
    const used = inputLength - Number(v.getBigUint64(AVAIL_IN, true));
    const made = outputLength - Number(v.getBigUint64(AVAIL_OUT, true));
    if (ret === LZMA_STREAM_END) return { used, made, end: true };
    if (ret !== LZMA_OK) {
      const usage = Number(this.f.memusage(this.strm.address) as bigint);
      throw failure(ret, usage, this.memoryLimit);
    }
    // liblzma answers LZMA_BUF_ERROR for the second call in a row without progress; with
    // FINISH and no input left the first one already says the data is cut short.
    if (finish && inputLength === 0 && made === 0) {
      if (this.noProgress) throw failure(10, 0, this.memoryLimit);
      this.noProgress = true;
    } else this.noProgress = false;
    return { used, made, end: false };
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.f.end(this.strm.address);
  }
}

function failure(ret: number, usage: number, limit: number): NativeDecodeError {
  const [kind, text] = FAILURES[ret] ?? ['internal', `unknown liblzma status ${ret}`];
  if (ret === 6) {
    const mib = (n: number) => `${Math.ceil(n / 2 ** 20)} MiB`;
    return new NativeDecodeError(
      kind,
      `xz data needs ${usage > 0 ? mib(usage) : 'more than the limit'} of memory to decode (its dictionary), over the limit of ${mib(limit)} (DISKPIPE_XZ_MEMLIMIT=SIZE, or the xzMemoryLimit option, raises it)`,
    );
  }
  return new NativeDecodeError(kind, text);
}
