/**
 * Bounds the work one connection has in flight: a count of requests and a byte total (request
 * payloads plus replies not yet handed to the socket). A request larger than the byte limit still
 * runs when nothing else is in flight, so a limit below the largest request cannot deadlock.
 */
export class Budget {
  private count = 0;
  private bytes = 0;
  private waiters: (() => void)[] = [];

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

  async acquire(bytes: number): Promise<void> {
    while (!this.fits(bytes)) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.count++;
    this.bytes += bytes;
  }

  release(bytes: number): void {
    this.count--;
    this.bytes -= bytes;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once nothing is in flight. */
  async idle(): Promise<void> {
    while (this.count > 0) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}
