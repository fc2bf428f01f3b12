/**
 * .bz2 through the system's libbz2 (koffi). A .bz2 file may hold several streams one after the
 * other (pbzip2 and `cat a.bz2 b.bz2` write that): each stream end starts a new decoder on the
 * bytes that follow. Bytes after the last stream that are not a stream ("trailing garbage")
 * are ignored, as `bzip2 -dc` does. libbz2 needs at most ~4 MiB per stream (900k blocks).
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

export const BZIP2_NAMES = [
  'libbz2.so.1',
  'libbz2.so.1.0',
  'libbz2.1.0.dylib',
  'libbz2.so',
] as const;

const BZ_OK = 0;
const BZ_STREAM_END = 4;
const BZ_DATA_ERROR_MAGIC = -5;

const FAILURES: Record<number, [NativeDecodeError['failure'], string]> = {
  [-1]: ['internal', 'libbz2 call out of sequence (BZ_SEQUENCE_ERROR)'],
  [-2]: ['internal', 'libbz2 rejected a parameter (BZ_PARAM_ERROR)'],
  [-3]: ['internal', 'libbz2 could not allocate memory (BZ_MEM_ERROR)'],
  [-4]: ['corrupt', 'compressed data is corrupt (BZ_DATA_ERROR)'],
  [-5]: ['corrupt', 'not in the bzip2 format (BZ_DATA_ERROR_MAGIC)'],
  [-6]: ['internal', 'libbz2 I/O error (BZ_IO_ERROR)'],
  [-7]: ['truncated', 'compressed data ends too early (BZ_UNEXPECTED_EOF)'],
  [-8]: ['internal', 'libbz2 output buffer full (BZ_OUTBUFF_FULL)'],
  [-9]: ['internal', 'libbz2 was built wrongly for this platform (BZ_CONFIG_ERROR)'],
};

// bz_stream (bzlib.h) on 64-bit platforms.
const STREAM_BYTES = 80;
const NEXT_IN = 0;
const AVAIL_IN = 8;
const NEXT_OUT = 24;
const AVAIL_OUT = 32;

interface Bz2Functions {
  init: NativeFunction;
  decompress: NativeFunction;
  end: NativeFunction;
}

const bind = bindOnce(
  ({ lib }): Bz2Functions => ({
    init: lib.func(
      'int BZ2_bzDecompressInit(uint64_t strm, int verbosity, int small)',
    ) as NativeFunction,
    decompress: lib.func('int BZ2_bzDecompress(uint64_t strm)') as NativeFunction,
    end: lib.func('int BZ2_bzDecompressEnd(uint64_t strm)') as NativeFunction,
  }),
);

/** libbz2, or why it cannot be used. */
export function loadBzip2(): SystemLib | string {
  return loadBound(BZIP2_NAMES, bind);
}

export class Bzip2Decoder implements NativeDecoder {
  private readonly f: Bz2Functions;
  private readonly strm: StreamStruct;
  private open = false;
  private streams = 0;
  /** A stream has ended and the next one has not shown its first byte yet. */
  private between = false;

  constructor(sys: SystemLib) {
    this.f = bind(sys);
    this.strm = structIn(sys, STREAM_BYTES);
    this.start();
  }

  private start(): void {
    this.strm.bytes.fill(0);
    const ret = this.f.init(this.strm.address, 0, 0) as number;
    if (ret !== BZ_OK) throw failure(ret);
    this.open = true;
    this.between = false;
  }

  step(
    input: bigint,
    inputLength: number,
    output: bigint,
    outputLength: number,
    finish: boolean,
  ): NativeStep {
    if (this.between) {
      // The previous stream ended: more bytes start another one; none means the end.
      if (inputLength === 0) return { used: 0, made: 0, end: finish };
      this.start();
    }
    const v = this.strm.view;
    v.setBigUint64(NEXT_IN, input, true);
    v.setUint32(AVAIL_IN, inputLength, true);
    v.setBigUint64(NEXT_OUT, output, true);
    v.setUint32(AVAIL_OUT, outputLength, true);
    const ret = this.f.decompress(this.strm.address) as number;
    const used = inputLength - v.getUint32(AVAIL_IN, true);
    const made = outputLength - v.getUint32(AVAIL_OUT, true);
    if (ret === BZ_STREAM_END) {
      this.streams++;
      this.close();
      this.between = true;
      return { used, made, end: finish && used === inputLength };
    }
    if (ret === BZ_DATA_ERROR_MAGIC && this.streams > 0) {
      // Trailing garbage after a complete stream: ignored, as bzip2 -dc does.
      this.close();
      return { used: inputLength, made: 0, end: true };
    }
    if (ret !== BZ_OK) throw failure(ret);
    if (finish && used === inputLength && made === 0 && outputLength > 0) {
      throw failure(-7); // the input has ended inside a stream
    }
    return { used, made, end: false };
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.f.end(this.strm.address);
  }
}

function failure(ret: number): NativeDecodeError {
  const [kind, text] = FAILURES[ret] ?? ['internal', `unknown libbz2 status ${ret}`];
  return new NativeDecodeError(kind, text);
}
