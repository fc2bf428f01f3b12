/**
 * Decoding on a system library in a worker thread (liblzma for .xz, libbz2 for .bz2, libzstd
 * for .zst): the
 * main thread only moves compressed input in and hands the output slots on. Output comes in
 * 1 MiB chunks that are views of a shared ring (reused once the consumer has moved two chunks
 * further, as SequentialSource allows); all-zero chunks are the shared zero chunk, never
 * copied, so consumers can skip them (isZeroChunk).
 */
import { Worker } from 'node:worker_threads';
import { CorruptImageError, IoError, UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { isNativeEnabled } from '../../io/native.js';
import { workerScriptOverride } from '../../io/worker-scripts.js';
import { zeroChunk } from '../sequential.js';
import { loadBzip2 } from './native-bzip2.js';
import { loadLzma } from './native-lzma.js';
import type { FromWorker, NativeKind, ToWorker, WorkerSetup } from './native-worker.js';
import { loadZstd } from './native-zstd.js';

/** Default memory limit of the xz decoder (xz -9 needs 65 MiB; hostile headers ask for GiBs). */
export const DEFAULT_XZ_MEMORY_LIMIT = 256 * 1024 * 1024;
const SLOT_BYTES = 1024 * 1024;
const SLOTS = 8;
/** Chunks the consumer may still hold: the current one and the one before. */
const HELD = 2;
/** Compressed input buffers on their way to the worker or in its queue. */
const INPUT_IN_FLIGHT = 4;
/** Bytes read from a random-access source at a time, straight into a transfer buffer. */
const READ_BYTES = 1024 * 1024;

export interface NativeOptions {
  /** Bytes the xz decoder may allocate (its dictionary, and per thread when threaded). */
  memoryLimit?: number;
  /**
   * Threads for multi-block .xz files (default 1: measured on 2 busy cores, 2 threads cost
   * 18% more CPU and twice the memory (274 MiB peak) for no gain in wall time).
   */
  threads?: number;
}

/** The library that decodes `kind` here ("liblzma.so.5"), or undefined. */
export function nativeLibrary(kind: string): string | undefined {
  if (!isNativeEnabled()) return undefined;
  const load =
    kind === 'xz'
      ? loadLzma
      : kind === 'bzip2'
        ? loadBzip2
        : kind === 'zstd'
          ? loadZstd
          : undefined;
  const sys = load ? load() : 'none';
  return typeof sys === 'string' ? undefined : sys.name;
}

/**
 * `input`: chunks (copied into transfer buffers), or a source read from start to end straight
 * into the buffers that go to the worker and come back (no allocation or copy per chunk).
 */
export async function* decodeNative(
  kind: NativeKind,
  input: AsyncIterable<Uint8Array> | ByteSource,
  opts: NativeOptions = {},
): AsyncGenerator<Uint8Array> {
  const ring = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  const setup: WorkerSetup = {
    kind,
    ring,
    slotBytes: SLOT_BYTES,
    memoryLimit: opts.memoryLimit ?? DEFAULT_XZ_MEMORY_LIMIT,
    threads: opts.threads ?? 1,
  };
  const script = workerScriptOverride('unpack');
  const options = { workerData: setup, execArgv: [] };
  const worker = script
    ? new Worker(script, options)
    : new Worker(new URL('./native-worker.js', import.meta.url), options);
  const send = (m: ToWorker, transfer: ArrayBuffer[] = []) => worker.postMessage(m, transfer);
  const inbox = new Inbox();
  const feeder = new Feeder(input, send, inbox);
  worker.on('message', (m: FromWorker) => {
    if (m.kind === 'consumed') feeder.returned(m.buffer);
    else inbox.push(m);
  });
  worker.on('error', (err) => inbox.fail(new IoError(`decode worker: ${err.message}`)));
  worker.on('exit', (code) => inbox.fail(new IoError(`decode worker stopped (exit ${code})`)));
  const held: number[] = [];
  try {
    for (;;) {
      // Ref'd only while output is awaited: a consumer that stops without closing the stream
      // must not keep the process alive through an idle worker.
      worker.ref();
      const m = await inbox.next();
      worker.unref();
      if (m.kind === 'end') return;
      if (m.kind === 'error') throw decodeError(kind, m.failure, m.message);
      if (m.kind === 'zero') {
        yield zeroChunk(m.length);
        continue;
      }
      yield new Uint8Array(ring, m.slot * SLOT_BYTES, m.length);
      held.push(m.slot);
      if (held.length > HELD) send({ kind: 'free', slot: held.shift()! });
    }
  } finally {
    inbox.closing = true;
    await worker.terminate();
    await feeder.stop();
  }
}

function decodeError(kind: NativeKind, failure: string, message: string): Error {
  if (failure === 'memory-limit' || failure === 'unsupported')
    return new UnsupportedFeatureError(message);
  // Not the data's fault (the library failed to load or allocate): not called corruption.
  if (failure === 'internal') return new IoError(`${kind} decoder (system library): ${message}`);
  return new CorruptImageError(message);
}

/** Messages from the worker, awaited one at a time; a failure ends the queue. */
class Inbox {
  private readonly queue: (FromWorker | Error)[] = [];
  private wake: (() => void) | undefined;
  /** Set while tearing down: the worker's exit is expected then. */
  closing = false;

  push(m: FromWorker | Error): void {
    this.queue.push(m);
    this.wake?.();
    this.wake = undefined;
  }

  fail(err: Error): void {
    if (!this.closing) this.push(err);
  }

  async next(): Promise<Exclude<FromWorker, { kind: 'consumed' }>> {
    while (this.queue.length === 0) await new Promise<void>((r) => (this.wake = r));
    const m = this.queue.shift()!;
    if (m instanceof Error) throw m;
    return m as Exclude<FromWorker, { kind: 'consumed' }>;
  }
}

/**
 * Reads the compressed input and posts it to the worker, at most INPUT_IN_FLIGHT buffers
 * ahead. An error of the input goes to the inbox unchanged (a network error stays one).
 */
class Feeder {
  private readonly it: AsyncIterator<Uint8Array> | undefined;
  private readonly source: ByteSource | undefined;
  private readonly spare: ArrayBuffer[] = [];
  private inFlight = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private readonly running: Promise<void>;

  constructor(
    input: AsyncIterable<Uint8Array> | ByteSource,
    private readonly send: (m: ToWorker, transfer?: ArrayBuffer[]) => void,
    private readonly inbox: Inbox,
  ) {
    if (Symbol.asyncIterator in input) this.it = input[Symbol.asyncIterator]();
    else this.source = input;
    this.running = this.run();
  }

  /** A consumed input buffer came back from the worker. */
  returned(buffer: ArrayBuffer): void {
    this.inFlight--;
    this.spare.push(buffer);
    this.wake?.();
    this.wake = undefined;
  }

  private async run(): Promise<void> {
    try {
      if (this.source) await this.readSource(this.source);
      else await this.copyChunks(this.it!);
      if (!this.stopped) this.send({ kind: 'end' });
    } catch (err) {
      if (!this.stopped) this.inbox.push(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private async copyChunks(it: AsyncIterator<Uint8Array>): Promise<void> {
    for (;;) {
      const r = await it.next();
      if (this.stopped || r.done) return;
      const chunk = r.value;
      if (chunk.length === 0) continue;
      if (!(await this.room())) return;
      // Copied: the producer may reuse its chunk, and the copy can be transferred.
      let buffer = this.spare.pop();
      if (!buffer || buffer.byteLength < chunk.length) buffer = new ArrayBuffer(chunk.length);
      new Uint8Array(buffer).set(chunk);
      this.post(buffer, chunk.length);
    }
  }

  private async readSource(source: ByteSource): Promise<void> {
    for (let pos = 0; pos < source.size; ) {
      if (!(await this.room())) return;
      const buffer = this.spare.pop() ?? new ArrayBuffer(READ_BYTES);
      const n = await source.read(
        new Uint8Array(buffer, 0, Math.min(READ_BYTES, source.size - pos)),
        pos,
      );
      if (this.stopped || n === 0) return;
      pos += n;
      this.post(buffer, n);
    }
  }

  /** Waits until fewer than INPUT_IN_FLIGHT buffers are out; false once stopped. */
  private async room(): Promise<boolean> {
    while (this.inFlight >= INPUT_IN_FLIGHT && !this.stopped) {
      await new Promise<void>((w) => (this.wake = w));
    }
    return !this.stopped;
  }

  private post(buffer: ArrayBuffer, length: number): void {
    this.inFlight++;
    this.send({ kind: 'input', buffer, length }, [buffer]);
  }

  /** Stops reading and closes the input (its finally blocks run). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.running;
    await this.it?.return?.();
  }
}
