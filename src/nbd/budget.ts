/**
 * Bounds the work one connection has in flight: a count of requests and a byte total (request
 * payloads plus replies not yet handed to the socket). A request larger than the byte limit still
 * runs when nothing else is in flight, so a limit below the largest request cannot deadlock.
 * Waiters are served in order, each woken only once its share is granted (waking every waiter on
 * each release costs quadratic time with many requests queued).
 */
export class Budget {
  private count = 0;
  private bytes = 0;
  private readonly queue: { bytes: number; grant: () => void }[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly maxRequests: number,
    readonly maxBytes: number,
  ) {}

  get inFlight(): number {
    return this.count;
  }

  get bytesInFlight(): number {
    return this.bytes;
  }

  private fits(bytes: number): boolean {
    if (this.count >= this.maxRequests) return false;
    return this.count === 0 || this.bytes + bytes <= this.maxBytes;
  }

  private take(bytes: number): void {
    this.count++;
    this.bytes += bytes;
  }

  /** Resolves once `bytes` (and one request slot) are granted; release them when done. */
  acquire(bytes: number): Promise<void> {
    if (this.queue.length === 0 && this.fits(bytes)) {
      this.take(bytes);
      return Promise.resolve();
    }
    return new Promise((grant) => this.queue.push({ bytes, grant }));
  }

  release(bytes: number): void {
    this.count--;
    this.bytes -= bytes;
    while (this.queue.length > 0 && this.fits(this.queue[0]!.bytes)) {
      const next = this.queue.shift()!;
      this.take(next.bytes);
      next.grant();
    }
    if (this.count === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves once nothing is in flight. */
  async idle(): Promise<void> {
    while (this.count > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }
}
