/**
 * A minimum transfer rate, like curl's --speed-limit/--speed-time: a transfer that receives
 * fewer than `minRate` bytes per second over a whole window fails. An idle timer alone does not
 * catch a server that drips one byte every few seconds.
 */
import { UnsupportedFeatureError } from '../errors.js';

export interface RateLimits {
  /** Bytes per second a transfer must average over each window (0: no minimum). */
  minRate?: number;
  /** The window, in ms. */
  minRateWindowMs?: number;
}

export const RATE_DEFAULTS = { minRate: 1024, minRateWindowMs: 30_000 } as const;

export function slowTransferMessage(limits: RateLimits): string {
  const { minRate, minRateWindowMs } = { ...RATE_DEFAULTS, ...limits };
  return `transfer slower than ${minRate} bytes/s over ${minRateWindowMs / 1000} s (see --min-rate and --min-rate-window)`;
}

/** Counts bytes of one transfer and calls `onSlow` once if a window falls below the rate. */
export class RateWatch {
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    limits: RateLimits,
    private readonly onSlow: () => void,
  ) {
    const { minRate, minRateWindowMs } = { ...RATE_DEFAULTS, ...limits };
    if (minRate <= 0) return;
    const needed = (minRate * minRateWindowMs) / 1000;
    this.timer = setInterval(() => {
      if (this.bytes < needed) {
        this.stop();
        this.onSlow();
      }
      this.bytes = 0;
    }, minRateWindowMs);
    // The transfer itself keeps the process alive; a finished one must not wait for the timer.
    this.timer.unref();
  }

  add(n: number): void {
    this.bytes += n;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Passes a body's chunks on, failing with `slow` (after calling `abort`, which must cancel the
 * transfer) when the rate falls below the limit, and with a limit error past `maxBytes`.
 */
export async function* watchedChunks(
  chunks: AsyncIterable<Uint8Array>,
  opts: RateLimits & {
    abort: () => void;
    slow: () => Error;
    maxBytes?: number | undefined;
    tooLarge?: () => Error;
  },
): AsyncGenerator<Uint8Array> {
  const it = chunks[Symbol.asyncIterator]();
  // The pending read's reject, replaced on every read. Racing each read against one long-lived
  // promise would leave a reaction on it per read, each holding its chunk: the whole body.
  let rejectRead: ((err: Error) => void) | undefined;
  let slowError: Error | undefined;
  let aborted = false;
  const watch = new RateWatch(opts, () => {
    aborted = true;
    // Reject first: the aborted read's own error must not win the race.
    slowError = opts.slow();
    rejectRead?.(slowError);
    opts.abort();
  });
  const next = () =>
    new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
      if (slowError) throw slowError;
      rejectRead = reject;
      it.next().then(resolve, reject);
    }).finally(() => {
      rejectRead = undefined;
    });
  let total = 0;
  let done = false;
  try {
    for (;;) {
      const r = await next();
      if (r.done) {
        done = true;
        return;
      }
      watch.add(r.value.length);
      total += r.value.length;
      if (opts.maxBytes !== undefined && total > opts.maxBytes) {
        aborted = true;
        opts.abort();
        throw opts.tooLarge?.() ?? new UnsupportedFeatureError('transfer is too large');
      }
      yield r.value;
    }
  } finally {
    watch.stop();
    // An aborted (stalled) read may never settle: do not wait for the body to wind down then.
    if (!done) {
      const closing = it.return?.();
      if (closing && !aborted) await closing.catch(() => {});
      else closing?.catch(() => {});
    }
  }
}
