/**
 * The decode worker pool: one worker per CPU (os.availableParallelism), started on first
 * use. Each batch goes to the least busy worker. Workers are unref'd while idle so they never
 * keep the process alive, and ref'd while they owe an answer so an await cannot be dropped.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { IoError, UnsupportedFeatureError } from '../errors.js';
import { workerScriptOverride } from '../io/worker-scripts.js';
import type { BatchFailure } from './batch.js';
import type { DecodeReply, DecodeRequest, HostRead, ZstdDecoder } from './worker.js';

/** A worker's answer: the first failing item, and the bytes it read itself (if asked to). */
export interface WorkerResult {
  failure: BatchFailure | undefined;
  bytesRead?: number | undefined;
}

interface Pending {
  resolve: (r: WorkerResult) => void;
  reject: (err: Error) => void;
}

class Slot {
  readonly pending = new Map<number, Pending>();
  /** Settles once the worker has loaded its modules, or has exited. */
  readonly loaded: Promise<void>;
  markLoaded: () => void = () => {};
  /** Set by closeDecodePool: the worker stays ref'd until it has exited. */
  closing = false;
  constructor(readonly worker: Worker) {
    this.loaded = new Promise((resolve) => {
      this.markLoaded = resolve;
    });
  }
}

let slots: Slot[] | undefined;
let nextId = 1;

function start(): Slot {
  const script = workerScriptOverride('decode');
  const worker = script ? new Worker(script) : new Worker(new URL('./worker.js', import.meta.url));
  const slot = new Slot(worker);
  worker.on('message', (m: DecodeReply | { ready: true }) => {
    if ('ready' in m) {
      slot.markLoaded();
      return;
    }
    const p = slot.pending.get(m.id);
    if (!p) return;
    slot.pending.delete(m.id);
    if (slot.pending.size === 0 && !slot.closing) worker.unref();
    if (m.fatal !== undefined) p.reject(new UnsupportedFeatureError(m.fatal));
    else if (m.readError !== undefined) p.reject(new IoError(m.readError));
    else p.resolve({ failure: m.failure, bytesRead: m.bytesRead });
  });
  const fail = (err: Error) => {
    slot.markLoaded();
    slots = slots?.filter((s) => s !== slot);
    for (const p of slot.pending.values()) p.reject(err);
    slot.pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`decode worker exited (code ${code})`)));
  // After the listeners: adding a 'message' listener refs the worker's port again.
  worker.unref();
  return slot;
}

function ensureStarted(): Slot[] {
  if (!slots || slots.length === 0) {
    const n = Math.max(1, Math.min(8, availableParallelism()));
    slots = Array.from({ length: n }, start);
  }
  return slots;
}

function pick(): Slot {
  const all = ensureStarted();
  let best = all[0]!;
  for (const s of all) if (s.pending.size < best.pending.size) best = s;
  return best;
}

/**
 * Starts the workers now (else on the first batch): a caller that knows batches will come
 * soon lets them load their modules meanwhile. Idle workers never keep the process alive.
 */
export function startDecodeWorkers(): void {
  ensureStarted();
}

/**
 * Runs one batch on a worker; `span` and `dst` must be views on SharedArrayBuffers. With
 * `read`, the worker first fills `span` from that file itself (then decodes only if it got
 * every byte), so the calling thread does not copy the compressed bytes either.
 */
export function runOnWorker(
  span: Uint8Array,
  items: Int32Array,
  dst: Uint8Array,
  zstd: ZstdDecoder,
  read?: HostRead,
): Promise<WorkerResult> {
  const slot = pick();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    if (slot.pending.size === 0) slot.worker.ref();
    slot.pending.set(id, { resolve, reject });
    const req: DecodeRequest = { id, span, items, dst, read, zstd };
    slot.worker.postMessage(req, [items.buffer as ArrayBuffer]);
  });
}

/** Stops the workers (they restart on next use). Library users may call it at shutdown. */
export async function closeDecodePool(): Promise<void> {
  const s = slots ?? [];
  slots = undefined;
  await Promise.all(
    s.map(async (slot) => {
      // A worker terminated while Node still reads its module files leaks that file's
      // descriptor for good: let it finish loading first (ref'd, so the waits are kept).
      slot.closing = true;
      slot.worker.ref();
      await slot.loaded;
      await slot.worker.terminate();
    }),
  );
}
