/** Small coordination helpers for the copy workers. */

/** Hands out the items of an async iterator to concurrent callers, one at a time. */
export class SharedIterator<T> {
  private chain: Promise<unknown> = Promise.resolve();
  private done = false;
  private count = 0;

  constructor(private readonly source: AsyncIterator<T>) {}

  /** The next item with its sequence number, or undefined at the end. */
  next(): Promise<{ item: T; seq: number } | undefined> {
    const result = this.chain.then(async () => {
      if (this.done) return undefined;
      const r = await this.source.next();
      if (r.done) {
        this.done = true;
        return undefined;
      }
      return { item: r.value, seq: this.count++ };
    });
    // A failed pull must not wedge the other workers; the failure reaches its caller.
    this.chain = result.catch(() => {
      this.done = true;
    });
    return result;
  }

  /** Stops the source (its finally blocks run). */
  async close(): Promise<void> {
    this.done = true;
    await this.chain;
    await this.source.return?.();
  }
}

/** Lets items commit strictly in sequence order (for stream targets). */
export class Turns {
  private current = 0;
  private released = false;
  private waiting = new Map<number, () => void>();

  wait(seq: number): Promise<void> {
    if (this.released || seq === this.current) return Promise.resolve();
    return new Promise((resolve) => this.waiting.set(seq, resolve));
  }

  /** Marks `seq` committed and wakes its successor. */
  advance(seq: number): void {
    if (seq !== this.current) return;
    this.current++;
    const wake = this.waiting.get(this.current);
    if (wake) {
      this.waiting.delete(this.current);
      wake();
    }
  }

  /** Wakes everyone (after a failure, so no worker waits forever). */
  release(): void {
    for (const wake of this.waiting.values()) wake();
    this.waiting.clear();
    this.released = true;
  }
}
