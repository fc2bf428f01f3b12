/**
 * Block hashing off the main thread: a pool of worker_threads, one window of blocks per job.
 * Window buffers are transferred to the worker and back (never copied). The pool only hashes;
 * the caller feeds the digests to the outer hash in block order (see ordered.ts).
 */

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { AbortError, CorruptImageError, IoError, ioError, UsageError } from '../../errors.js';
import { workerScriptOverride } from '../../io/worker-scripts.js';
import type { BlockDigester } from './blkhash.js';
import { FILE_PIECE_BYTES, type FileRange, hashFileRange } from './file-range.js';

export type { FileRange } from './file-range.js';

/** Posted to a worker. */
export interface HashRequest {
  id: number;
  algorithm: string;
  blockSize: number;
  /** A plain buffer is transferred (and posted back); a shared one is only shared. */
  buffer: ArrayBufferLike;
  length: number;
  /** Instead of a buffer: the worker reads file[position, position + length) itself. */
  file?: FileRange | undefined;
}

/**
 * Posted back by a worker; `buffer` is the request's buffer, returned for reuse. `ended` is
 * where a file range ended early (the file shrank): nothing was hashed.
 */
export type HashReply =
  | { id: number; buffer: ArrayBufferLike; digests: ArrayBuffer; hashedBytes: number }
  | { id: number; buffer: ArrayBufferLike; error: string; ended?: number };

export interface HashResult {
  /** The window buffer, handed back to the caller. */
  buffer: ArrayBufferLike;
  /** One digest per block of the window, in order. */
  digests: Uint8Array;
  /** Bytes hashed as data (all-zero full blocks are not hashed). */
  hashedBytes: number;
}

/** Something that hashes windows of blocks: the worker pool, or the calling thread. */
export interface BlockHasher {
  /** Hashing threads (0: the calling thread). */
  readonly threads: number;
  /**
   * Hashes the blocks of buffer[0, length). The buffer belongs to the hasher until the promise
   * settles (a plain ArrayBuffer may be transferred to a worker, a SharedArrayBuffer is read
   * in place); use the returned one afterwards.
   */
  hash(digester: BlockDigester, buffer: ArrayBufferLike, length: number): Promise<HashResult>;
  /**
   * Optional: hashes the blocks of a local file range, read by the hasher itself (the result's
   * buffer is empty). Rejects with a CorruptImageError if the file ends inside the range.
   */
  hashFile?(digester: BlockDigester, file: FileRange, length: number): Promise<HashResult>;
  close(): Promise<void>;
}

/** Hashes on the calling thread: for small inputs, or where workers are unwanted. */
export class InlineHasher implements BlockHasher {
  readonly threads = 0;

  async hash(
    digester: BlockDigester,
    buffer: ArrayBufferLike,
    length: number,
  ): Promise<HashResult> {
    const digests = new Uint8Array(Math.ceil(length / digester.blockSize) * digester.digestLength);
    const hashedBytes = digester.hashBlocks(new Uint8Array(buffer, 0, length), length, digests);
    return { buffer, digests, hashedBytes };
  }

  async hashFile(digester: BlockDigester, file: FileRange, length: number): Promise<HashResult> {
    let r: ReturnType<typeof hashFileRange>;
    try {
      r = hashFileRange(digester, file, length, Buffer.allocUnsafe(FILE_PIECE_BYTES));
    } catch (err) {
      throw ioError(err, `read error on ${file.name} at offset ${file.position}`);
    }
    if ('ended' in r) throw endedError(file, r.ended);
    return { buffer: new ArrayBuffer(0), digests: r.digests, hashedBytes: r.hashedBytes };
  }

  async close(): Promise<void> {}
}

interface Job {
  request: HashRequest;
  resolve(result: HashResult): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  /** Jobs posted to this worker, oldest first (it answers them in order). */
  jobs: Job[];
  /** Settles once the worker has loaded its modules, or has stopped. */
  loaded: Promise<void>;
  markLoaded(): void;
}

/**
 * Jobs posted to one worker at once: the next one waits in the worker's own queue, so a
 * worker never idles until this thread wakes to hand it more (on a busy machine that wake-up
 * can take longer than hashing a window).
 */
export const JOBS_PER_WORKER = 2;

/**
 * A pool of hash workers, started on demand. Idle workers are unref'd so that a pool left
 * open never keeps the process alive; a busy one is ref'd so that a pending job does.
 */
export class HashPool implements BlockHasher {
  readonly threads: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  constructor(threads: number = availableParallelism()) {
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256) {
      throw new UsageError(`invalid number of hash threads: ${threads}`);
    }
    this.threads = threads;
  }

  /** Workers started and not closed. */
  get running(): number {
    return this.slots.length;
  }

  hash(digester: BlockDigester, buffer: ArrayBufferLike, length: number): Promise<HashResult> {
    return this.submit(digester, buffer, length, undefined);
  }

  hashFile(digester: BlockDigester, file: FileRange, length: number): Promise<HashResult> {
    return this.submit(digester, new ArrayBuffer(0), length, file);
  }

  private submit(
    digester: BlockDigester,
    buffer: ArrayBufferLike,
    length: number,
    file: FileRange | undefined,
  ): Promise<HashResult> {
    if (this.closed) return Promise.reject(new AbortError('hash pool is closed'));
    const request: HashRequest = {
      id: this.nextId++,
      algorithm: digester.algorithm,
      blockSize: digester.blockSize,
      buffer,
      length,
      file,
    };
    return new Promise<HashResult>((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.pump();
    });
  }

  /**
   * Starts up to `count` workers now (a worker takes ~40 ms of CPU to boot), so that they boot
   * while the caller opens the image and reads its first windows, not after.
   */
  warm(count: number = this.threads): void {
    if (this.closed) return;
    const n = Math.min(this.threads, Math.max(0, Math.floor(count)));
    while (this.slots.length < n) this.spawn();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      job.reject(new AbortError('hash pool is closed'));
    }
    await Promise.all(
      this.slots.splice(0).map(async (slot) => {
        for (const job of slot.jobs.splice(0)) job.reject(new AbortError('hash pool is closed'));
        // A worker terminated while Node still reads its module files leaks that file's
        // descriptor (a worker that warm() just started): let it finish loading, ref'd.
        slot.worker.ref();
        await slot.loaded;
        await slot.worker.terminate();
      }),
    );
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.jobs.length === 0);
      if (!slot && this.slots.length < this.threads) slot = this.spawn();
      slot ??= this.leastBusy();
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.jobs.push(job);
      slot.worker.ref();
      const buffer = job.request.buffer;
      slot.worker.postMessage(job.request, buffer instanceof ArrayBuffer ? [buffer] : []);
    }
  }

  /** A worker with room for one more job, the least loaded. */
  private leastBusy(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (s.jobs.length < JOBS_PER_WORKER && (!best || s.jobs.length < best.jobs.length)) best = s;
    }
    return best;
  }

  private spawn(): Slot {
    // No inherited execArgv: flags such as --input-type or --eval are invalid in a worker.
    const script = workerScriptOverride('hash');
    const worker = script
      ? new Worker(script, { execArgv: [] })
      : new Worker(new URL('./worker.js', import.meta.url), { execArgv: [] });
    let markLoaded = () => {};
    const loaded = new Promise<void>((resolve) => {
      markLoaded = resolve;
    });
    const slot: Slot = { worker, jobs: [], loaded, markLoaded };
    worker.on('message', (reply: HashReply | { ready: true }) => {
      if ('ready' in reply) {
        slot.markLoaded();
        return;
      }
      const job = slot.jobs.shift();
      if (job && job.request.id === reply.id) {
        if ('error' in reply) {
          const file = job.request.file;
          if (reply.ended !== undefined && file) job.reject(endedError(file, reply.ended));
          else job.reject(new IoError(`hash worker: ${reply.error}`));
        } else {
          job.resolve({
            buffer: reply.buffer,
            digests: new Uint8Array(reply.digests),
            hashedBytes: reply.hashedBytes,
          });
        }
      }
      this.pump();
      if (slot.jobs.length === 0) worker.unref();
    });
    const lost = (why: string) => {
      slot.markLoaded();
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      this.slots.splice(i, 1);
      for (const job of slot.jobs.splice(0)) job.reject(new IoError(`hash worker stopped: ${why}`));
      if (!this.closed) this.pump();
    };
    worker.on('error', (err) => lost(err.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    // After the listeners (a 'message' listener refs the worker's port again): an idle
    // worker, one that warm() started, never keeps the process alive.
    worker.unref();
    this.slots.push(slot);
    return slot;
  }
}

function endedError(file: FileRange, at: number): CorruptImageError {
  return new CorruptImageError(`${file.name}: file ended at ${at} while reading`);
}

let shared: HashPool | undefined;

/** Workers in the shared pool: one per core, up to this many (hashing outruns reads beyond). */
export const MAX_SHARED_THREADS = 8;

/** The process-wide pool, one worker per core (at most 8), started on first use. */
export function sharedHashPool(): HashPool {
  shared ??= new HashPool(Math.min(availableParallelism(), MAX_SHARED_THREADS));
  return shared;
}
