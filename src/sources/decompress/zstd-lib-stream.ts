/**
 * A .zst stream through the system's libzstd (ZSTD_decompressStream), on the calling thread
 * in steps of at most STEP_BYTES of output, so the event loop is never held for more than
 * about a millisecond. libzstd reads concatenated frames and skippable frames itself and
 * verifies each frame's checksum; the end of the input must be the end of a frame.
 */
import type { ZstdLib } from '../../codec/zstd-lib.js';
import { ZstdError, ZstdErrorCode } from '../../codec/zstd-lib.js';
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';

/** Output bytes per step (and per yielded chunk). */
const STEP_BYTES = 1024 * 1024;
/** Largest window accepted: 2^28 = 256 MiB, as the JS decoder (zstd's own default is 2^27). */
const WINDOW_LOG_MAX = 28;

export async function* unzstdLib(
  lib: ZstdLib,
  input: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const stream = lib.stream(WINDOW_LOG_MAX);
  // libzstd's hint after the last step: 0 when a frame has just been completed.
  let hint = 0;
  let sawInput = false;
  let out = new Uint8Array(STEP_BYTES);
  let outPos = 0;
  try {
    for await (const chunk of input) {
      if (chunk.length === 0) continue;
      sawInput = true;
      let inPos = 0;
      for (;;) {
        const r = step(stream, chunk, inPos, out, outPos);
        ({ inPos, hint } = r);
        outPos = r.outPos;
        if (outPos === out.length) {
          // Full: there may be more to flush even when the input is used up.
          yield out;
          out = new Uint8Array(STEP_BYTES);
          outPos = 0;
          // A frame that ended exactly as the buffer filled is done: another step on the
          // used-up input would only replace hint 0 with "send the next frame header".
          if (hint === 0 && inPos === chunk.length) break;
          continue;
        }
        if (inPos === chunk.length) break;
      }
      // Hand over what this chunk produced (the consumer overlaps its writes with our reads).
      if (outPos > 0) {
        yield out.subarray(0, outPos);
        out = out.subarray(outPos);
        outPos = 0;
        if (out.length < STEP_BYTES / 4) out = new Uint8Array(STEP_BYTES);
      }
    }
  } finally {
    stream.free();
  }
  if (!sawInput) throw new CorruptImageError('zstd data is empty');
  if (hint !== 0) throw new CorruptImageError('zstd data is truncated (it ends inside a frame)');
}

function step(
  stream: ReturnType<ZstdLib['stream']>,
  src: Uint8Array,
  inPos: number,
  dst: Uint8Array,
  outPos: number,
) {
  try {
    return stream.step(src, inPos, dst, outPos);
  } catch (err) {
    if (!(err instanceof ZstdError)) throw err;
    if (err.code === ZstdErrorCode.WindowTooLarge) {
      throw new UnsupportedFeatureError(
        `zstd frame needs a window larger than ${2 ** (WINDOW_LOG_MAX - 20)} MiB (${err.message})`,
      );
    }
    if (err.code === ZstdErrorCode.ChecksumWrong) {
      // The words of the other decoders, which scripts and tests may look for.
      throw new CorruptImageError('zstd frame checksum does not match its content', { cause: err });
    }
    throw new CorruptImageError(`zstd data is corrupt: ${err.message}`, { cause: err });
  }
}
