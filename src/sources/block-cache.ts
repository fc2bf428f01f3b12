/**
 * A bounded block cache over a slow random-access fetcher (HTTP ranges): fixed-size blocks in
 * an LRU, missing neighbours fetched together, several fetches in flight, and readahead that
 * grows while a reader (one of several) keeps reading sequentially.
 */

export interface BlockCacheOptions {
  /** Total bytes of the resource. */
  size: number;
  blockSize: number;
  /** Upper bound of cached bytes (in-flight fetches come on top, bounded by maxInFlight). */
  capacity: number;
  maxInFlight: number;
  /** Largest fetch, in bytes (a multiple of blockSize is used). */
  maxRequest: number;
  /** Largest readahead window, in bytes. */
  maxReadahead: number;
  /** Fetches exactly [start, end) (end is clipped to size). */
  fetch(start: number, end: number): Promise<Uint8Array>;
}

interface Stream {
  /** Where this reader's sequential run began, and where its last read ended. */
  start: number;
  end: number;
}

/** Recent sequential readers tracked at once (copy engines read several ranges in parallel). */
const MAX_STREAMS = 8;

export class BlockCache {
  private readonly cached = new Map<number, Uint8Array>();
  private readonly pending = new Map<number, Promise<Uint8Array>>();
  private cachedBytes = 0;
  private readonly streams: Stream[] = [];
  private readonly gate: Gate;
  private readonly blocksPerRequest: number;

  constructor(private readonly o: BlockCacheOptions) {
    this.gate = new Gate(o.maxInFlight);
    this.blocksPerRequest = Math.max(1, Math.floor(o.maxRequest / o.blockSize));
  }

  /** Puts already fetched bytes (the answer to a first probing request) into the cache. */
  seed(offset: number, data: Uint8Array): void {
    const B = this.o.blockSize;
    for (let b = Math.ceil(offset / B); b * B < offset + data.length; b++) {
      const to = Math.min((b + 1) * B, this.o.size) - offset;
      if (to > data.length) break;
      this.insert(b, data.subarray(b * B - offset, to));
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    const end = Math.min(offset + buf.length, this.o.size);
    if (end <= offset) return 0;
    const B = this.o.blockSize;
    const first = Math.floor(offset / B);
    const last = Math.floor((end - 1) / B);
    const ahead = this.readaheadFor(offset, end);
    // Ask for a bounded window of blocks at a time so a huge read cannot pin unbounded memory.
    const window = this.blocksPerRequest * this.o.maxInFlight;
    for (let b = first; b <= last; b++) {
      if ((b - first) % window === 0) this.ensure(b, Math.min(last, b + window - 1), 'demand');
      if (b === first && ahead > 0) this.readahead(last, Math.ceil(ahead / B));
      const data = await this.block(b);
      const from = Math.max(offset, b * B);
      const to = Math.min(end, b * B + data.length);
      buf.set(data.subarray(from - b * B, to - b * B), from - offset);
    }
    return end - offset;
  }

  /**
   * Keeps `count` blocks after `last` fetched or in flight, topping the window up only once
   * half of it is used, so readahead goes out in large requests rather than one per block.
   */
  private readahead(last: number, count: number): void {
    const to = Math.min(this.lastBlock(), last + count);
    let covered = last + 1;
    while (covered <= to && (this.cached.has(covered) || this.pending.has(covered))) covered++;
    if (covered <= to && covered - last - 1 < count / 2) this.ensure(covered, to, 'readahead');
  }

  private lastBlock(): number {
    return Math.max(0, Math.ceil(this.o.size / this.o.blockSize) - 1);
  }

  /**
   * Readahead bytes for this read: twice what one of the recent readers has read in sequence
   * so far (so a few small adjacent reads, like a tar header walk, fetch nothing extra).
   */
  private readaheadFor(offset: number, end: number): number {
    const B = this.o.blockSize;
    const s = this.streams.find((x) => offset >= x.end - B && offset <= x.end + B);
    if (s) {
      s.end = Math.max(s.end, end);
      this.streams.splice(this.streams.indexOf(s), 1);
      this.streams.push(s);
      const limit = Math.min(this.o.maxReadahead, Math.floor(this.o.capacity / 4));
      const run = s.end - s.start;
      return run >= B ? Math.min(limit, 2 * run) : 0;
    }
    this.streams.push({ start: offset, end });
    if (this.streams.length > MAX_STREAMS) this.streams.shift();
    return 0;
  }

  private block(b: number): Promise<Uint8Array> {
    const hit = this.cached.get(b);
    if (hit) {
      // Move to the young end of the LRU.
      this.cached.delete(b);
      this.cached.set(b, hit);
      return Promise.resolve(hit);
    }
    const p = this.pending.get(b);
    if (p) return p;
    this.ensure(b, b, 'demand');
    return this.pending.get(b) ?? Promise.resolve(this.cached.get(b)!);
  }

  /** Starts fetches for the blocks in [from, to] that are neither cached nor in flight. */
  private ensure(from: number, to: number, kind: 'demand' | 'readahead'): void {
    let runStart = -1;
    for (let b = from; b <= to + 1; b++) {
      const missing = b <= to && !this.cached.has(b) && !this.pending.has(b);
      if (missing && runStart < 0) runStart = b;
      const runLong = runStart >= 0 && b - runStart === this.blocksPerRequest;
      if (runStart >= 0 && (!missing || runLong)) {
        this.fetchRun(runStart, b - 1, kind);
        runStart = missing ? b : -1;
      }
    }
  }

  private fetchRun(first: number, last: number, kind: 'demand' | 'readahead'): void {
    const B = this.o.blockSize;
    const start = first * B;
    const end = Math.min((last + 1) * B, this.o.size);
    const whole = this.gate.run(kind === 'demand', () => this.o.fetch(start, end));
    for (let b = first; b <= last; b++) {
      const forget = () => {
        if (this.pending.get(b) === p) this.pending.delete(b);
      };
      const p: Promise<Uint8Array> = whole.then((data) => {
        const block = data.subarray(b * B - start, Math.min((b + 1) * B, end) - start);
        forget();
        this.insert(b, block);
        return block;
      });
      // A failed fetch is forgotten (the next read retries it); readahead failures are silent.
      p.catch(forget);
      this.pending.set(b, p);
    }
  }

  private insert(b: number, data: Uint8Array): void {
    if (this.cached.has(b)) return;
    this.cached.set(b, data);
    this.cachedBytes += data.length;
    for (const [key, old] of this.cached) {
      if (this.cachedBytes <= this.o.capacity) break;
      this.cached.delete(key);
      this.cachedBytes -= old.length;
    }
  }
}

/** A counting semaphore where demand requests jump ahead of queued readahead. */
class Gate {
  private active = 0;
  private readonly waiting: { urgent: boolean; go: () => void }[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(urgent: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) {
      await new Promise<void>((go) => {
        const entry = { urgent, go };
        const at = urgent ? this.waiting.findIndex((w) => !w.urgent) : -1;
        if (at >= 0) this.waiting.splice(at, 0, entry);
        else this.waiting.push(entry);
      });
    } else {
      this.active++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next.go();
      else this.active--;
    }
  }
}
