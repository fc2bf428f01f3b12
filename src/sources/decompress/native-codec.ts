/**
 * What a decoder running on a system library (liblzma, libbz2) offers the decode worker: one
 * step from an input range to an output range, both given by address (shared or transferred
 * memory that never moves), so the library writes straight into the output slot.
 */

export interface NativeStep {
  /** Input bytes consumed. */
  used: number;
  /** Output bytes produced. */
  made: number;
  /** The compressed data has ended (every stream, and nothing but padding after it). */
  end: boolean;
}

export interface NativeDecoder {
  /** `finish`: no input follows this range (the decoder must then end or fail). */
  step(
    input: bigint,
    inputLength: number,
    output: bigint,
    outputLength: number,
    finish: boolean,
  ): NativeStep;
  /** Frees the library's state (idempotent). */
  close(): void;
}

/** Why decoding stopped: the main thread turns it into the matching DiskpipeError. */
export type NativeFailure = 'corrupt' | 'truncated' | 'memory-limit' | 'unsupported' | 'internal';

export class NativeDecodeError extends Error {
  constructor(
    readonly failure: NativeFailure,
    message: string,
  ) {
    super(message);
  }
}

/** A stream struct (lzma_stream, bz_stream) in memory that never moves, with its address. */
export interface StreamStruct {
  bytes: Uint8Array;
  view: DataView;
  address: bigint;
}
