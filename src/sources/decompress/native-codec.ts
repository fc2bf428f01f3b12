import { addressOf, loadSystemLib, type SystemLib } from '../../io/system-lib.js';

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

/** `declare` (a library's function bindings) run once per loaded library, then remembered. */
export function bindOnce<T extends object>(declare: (sys: SystemLib) => T): (sys: SystemLib) => T {
  const bound = new WeakMap<SystemLib, T>();
  return (sys) => {
    let f = bound.get(sys);
    if (!f) {
      f = declare(sys);
      bound.set(sys, f);
    }
    return f;
  };
}

/** A library from `names` whose functions `bind` finds, or why it cannot be used. */
export function loadBound(
  names: readonly string[],
  bind: (sys: SystemLib) => unknown,
): SystemLib | string {
  const sys = loadSystemLib(names);
  if (typeof sys === 'string') return sys;
  try {
    bind(sys);
    return sys;
  } catch (err) {
    return `${sys.name}: ${(err as Error).message}`;
  }
}

/** A library struct in shared memory, with its address. */
export function structIn(sys: SystemLib, bytes: number): StreamStruct {
  // Shared memory never moves, so the library may keep pointers into it between calls.
  const mem = new Uint8Array(new SharedArrayBuffer(bytes));
  return { bytes: mem, view: new DataView(mem.buffer), address: addressOf(sys, mem) };
}
