/**
 * Digests of a byte stream computed on a worker thread, so that hashing a download overlaps
 * receiving, writing and converting it (two cores instead of one). `update` copies chunks into
 * 1 MiB batches whose buffers are transferred to the worker and back (no copy on the way);
 * at most MAX_IN_FLIGHT batches exist, and `update` makes the caller wait beyond that, so a
 * slow hash slows the stream instead of growing memory. `take` hands over bytes that already
 * sit in shared memory (the download's write stages) by reference: no copy at all, and the
 * caller keeps the memory until the worker is done with it.
 */
import { Worker } from 'node:worker_threads';
import { AbortError, IoError } from '../errors.js';
import { workerScriptOverride } from '../io/worker-scripts.js';

export type StreamAlgorithm = 'sha256' | 'sha512' | 'blkhash';

/** The first request names the algorithms (they may be added to until then). */
export type StreamDigestRequest =
  | { kind: 'data'; buffer: ArrayBuffer; length: number; algorithms?: StreamAlgorithm[] }
  | {
      kind: 'shared';
      buffer: SharedArrayBuffer;
      offset: number;
      length: number;
      algorithms?: StreamAlgorithm[];
    }
  | { kind: 'finish'; algorithms?: StreamAlgorithm[] };

export type StreamDigestReply =
  | { kind: 'ack'; buffer: ArrayBuffer }
  | { kind: 'taken' }
  | { kind: 'digests'; hex: Partial<Record<StreamAlgorithm, string>> }
  | { kind: 'error'; message: string };

const BATCH = 1024 * 1024;
const MAX_IN_FLIGHT = 8;

export class StreamDigests {
  private readonly worker: Worker;
  private readonly free: ArrayBuffer[] = [];
  private batch: Uint8Array | undefined;
  private fill = 0;
  private inFlight = 0;
  private buffers = 0;
  private failure: Error | undefined;
  private wakeUp: (() => void) | undefined;
  /** Callers of `take`, in the order the worker answers them. */
  private readonly taken: { resolve(): void; reject(err: Error): void }[] = [];
  private finishing:
    | { resolve(hex: Partial<Record<StreamAlgorithm, string>>): void; reject(err: Error): void }
    | undefined;
  private closed = false;
  private readonly chosen: StreamAlgorithm[];
  /** The algorithms went to the worker with the first request. */
  private started = false;
  /** Bytes given so far. */
  length = 0;

  /** The worker starts at once (before the first bytes arrive). */
  constructor(algorithms: readonly StreamAlgorithm[]) {
    this.chosen = [...algorithms];
    // No inherited execArgv: flags such as --input-type or --eval are invalid in a worker.
    const script = workerScriptOverride('digest');
    const options = { execArgv: [] };
    this.worker = script
      ? new Worker(script, options)
      : new Worker(new URL('./stream-digest-worker.js', import.meta.url), options);
    this.worker.unref();
    this.worker.on('message', (reply: StreamDigestReply) => this.receive(reply));
    this.worker.on('error', (err) => this.fail(new IoError(`digest worker: ${err.message}`)));
    this.worker.on('exit', (code) => this.fail(new IoError(`digest worker stopped (${code})`)));
  }

  get algorithms(): readonly StreamAlgorithm[] {
    return this.chosen;
  }

  /**
   * Computes `algorithm` too, from the first byte: possible until the first batch has gone to
   * the worker (1 MiB given, or finish()). Returns whether it was added.
   */
  add(algorithm: StreamAlgorithm): boolean {
    if (this.started) return false;
    if (!this.chosen.includes(algorithm)) this.chosen.push(algorithm);
    return true;
  }

  /**
   * Adds bytes (copied: the caller may reuse `chunk`). Returns a promise only when the worker
   * is behind and the caller must wait before giving more.
   */
  update(chunk: Uint8Array): Promise<void> | undefined {
    this.check();
    this.length += chunk.length;
    for (let pos = 0; pos < chunk.length; ) {
      this.batch ??= new Uint8Array(this.free.pop() ?? this.newBuffer());
      const n = Math.min(BATCH - this.fill, chunk.length - pos);
      this.batch.set(chunk.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === BATCH) this.post();
    }
    return this.free.length === 0 && this.buffers >= MAX_IN_FLIGHT ? this.room() : undefined;
  }

  /**
   * Adds `bytes`, which must be a view of a SharedArrayBuffer, by reference; resolves when the
   * worker no longer reads them (the caller must not change them before).
   */
  take(bytes: Uint8Array): Promise<void> {
    this.check();
    if (bytes.length === 0) return Promise.resolve();
    // Bytes given by `update` and not yet posted come first.
    if (this.fill > 0) this.post();
    this.length += bytes.length;
    const request: StreamDigestRequest = {
      kind: 'shared',
      buffer: bytes.buffer as SharedArrayBuffer,
      offset: bytes.byteOffset,
      length: bytes.length,
      ...this.start(),
    };
    const done = new Promise<void>((resolve, reject) => this.taken.push({ resolve, reject }));
    if (this.inFlight++ === 0) this.worker.ref();
    this.worker.postMessage(request);
    return done;
  }

  /** The hex digests of everything given; the worker stops afterwards. */
  async finish(): Promise<Partial<Record<StreamAlgorithm, string>>> {
    this.check();
    if (this.fill > 0) this.post();
    const done = new Promise<Partial<Record<StreamAlgorithm, string>>>((resolve, reject) => {
      this.finishing = { resolve, reject };
    });
    this.worker.ref();
    this.worker.postMessage({ kind: 'finish', ...this.start() } satisfies StreamDigestRequest);
    try {
      return await done;
    } finally {
      this.close();
    }
  }

  /** Stops the worker (idempotent); the digests are abandoned. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failure ??= new AbortError('digest stream closed');
    // Lent bytes go back to their owner: the worker reads nothing more.
    this.wake();
    void this.worker.terminate();
  }

  private newBuffer(): ArrayBuffer {
    this.buffers++;
    return new ArrayBuffer(BATCH);
  }

  private post(): void {
    const buffer = this.batch!.buffer as ArrayBuffer;
    const request: StreamDigestRequest = {
      kind: 'data',
      buffer,
      length: this.fill,
      ...this.start(),
    };
    this.batch = undefined;
    this.fill = 0;
    if (this.inFlight++ === 0) this.worker.ref();
    this.worker.postMessage(request, [buffer]);
  }

  /** The algorithms, on the first request only. */
  private start(): { algorithms?: StreamAlgorithm[] } {
    if (this.started) return {};
    this.started = true;
    return { algorithms: [...this.chosen] };
  }

  private room(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.wakeUp = () => (this.failure ? reject(this.failure) : resolve());
    });
  }

  private receive(reply: StreamDigestReply): void {
    if (reply.kind === 'ack' || reply.kind === 'taken') {
      if (reply.kind === 'ack') this.free.push(reply.buffer);
      else this.taken.shift()?.resolve();
      // Idle workers must not keep the process alive, but one owing the digests must.
      if (--this.inFlight === 0 && !this.finishing) this.worker.unref();
    } else if (reply.kind === 'digests') {
      this.finishing?.resolve(reply.hex);
      return;
    } else {
      this.failure ??= new IoError(`digest worker: ${reply.message}`);
    }
    this.wake();
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.failure ??= err;
    this.wake();
  }

  private wake(): void {
    if (this.failure) {
      this.finishing?.reject(this.failure);
      for (const t of this.taken.splice(0)) t.reject(this.failure);
    }
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }
}
