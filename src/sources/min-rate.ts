/**
 * A minimum transfer rate, like curl's --speed-limit/--speed-time: a transfer that receives
 * fewer than `minRate` bytes per second over a whole window fails. An idle timer alone does not
 * catch a server that drips one byte every few seconds.
 */
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
