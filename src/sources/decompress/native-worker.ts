/**
 * The decode worker: one per compressed stream. It runs a system library's decoder (liblzma,
 * libbz2, libzstd) synchronously, writing straight into slots of a ring shared with the main thread,
 * and tells the main thread which slot holds output. A slot that decoded to all zeroes is
 * reported by its length only (the slot is reused at once): zero runs never cross threads.
 * Compressed input arrives in transferred buffers, which go back once consumed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { addressOf, type SystemLib } from '../../io/system-lib.js';
import { Bzip2Decoder, loadBzip2 } from './native-bzip2.js';
import { NativeDecodeError, type NativeDecoder } from './native-codec.js';
import { LzmaDecoder, loadLzma } from './native-lzma.js';
import { loadZstd, ZstdDecoder } from './native-zstd.js';

export type NativeKind = 'xz' | 'bzip2' | 'zstd';

export interface WorkerSetup {
  kind: NativeKind;
  ring: SharedArrayBuffer;
  slotBytes: number;
  memoryLimit: number;
  threads: number;
}

export type ToWorker =
  | { kind: 'input'; buffer: ArrayBuffer; length: number }
  | { kind: 'end' }
  | { kind: 'free'; slot: number };

export type FromWorker =
  | { kind: 'data'; slot: number; length: number }
  | { kind: 'zero'; length: number }
  | { kind: 'consumed'; buffer: ArrayBuffer }
  | { kind: 'end' }
  | { kind: 'error'; failure: NativeDecodeError['failure']; message: string };

interface Input {
  buffer: ArrayBuffer;
  address: bigint;
  length: number;
  used: number;
}

const LOADERS: Record<NativeKind, () => SystemLib | string> = {
  xz: loadLzma,
  bzip2: loadBzip2,
  zstd: loadZstd,
};

/** Library calls between two looks at the message queue (each fills a slot at most). */
const STEPS_PER_TURN = 16;

function main(port: NonNullable<typeof parentPort>, setup: WorkerSetup): void {
  const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer ?? []);
  let sys: SystemLib;
  let decoder: NativeDecoder;
  try {
    const lib = LOADERS[setup.kind]();
    if (typeof lib === 'string') throw new NativeDecodeError('internal', lib);
    sys = lib;
    decoder =
      setup.kind === 'xz'
        ? new LzmaDecoder(sys, setup.memoryLimit, setup.threads)
        : setup.kind === 'zstd'
          ? new ZstdDecoder(sys)
          : new Bzip2Decoder(sys);
  } catch (err) {
    fail(err);
    return;
  }
  const slotBytes = setup.slotBytes;
  const ring = new Uint8Array(setup.ring);
  const ringAddress = addressOf(sys, ring);
  const zeroes = Buffer.alloc(slotBytes);
  const free = Array.from({ length: ring.length / slotBytes }, (_, i) => i).reverse();
  const inputs: Input[] = [];
  let ended = false;
  let done = false;
  let slot = -1;
  let fill = 0;
  let scheduled = false;

  function fail(err: unknown): void {
    done = true;
    const failure = err instanceof NativeDecodeError ? err.failure : 'internal';
    post({ kind: 'error', failure, message: (err as Error)?.message ?? String(err) });
  }

  function schedule(): void {
    if (scheduled || done) return;
    scheduled = true;
    setImmediate(pump);
  }

  /** Hands the current slot on: its output, or only its length when it is all zeroes. */
  function emit(): void {
    if (slot < 0 || fill === 0) return;
    const at = slot * slotBytes;
    if (Buffer.from(setup.ring, at, fill).equals(zeroes.subarray(0, fill))) {
      post({ kind: 'zero', length: fill });
    } else {
      post({ kind: 'data', slot, length: fill });
      slot = -1;
    }
    fill = 0;
  }

  function pump(): void {
    scheduled = false;
    if (done) return;
    try {
      for (let steps = 0; steps < STEPS_PER_TURN; steps++) {
        if (slot < 0) {
          const next = free.pop();
          if (next === undefined) return; // wait for the main thread to free one
          slot = next;
          fill = 0;
        }
        const input = inputs[0];
        if (!input && !ended) return; // wait for input
        const finish = ended && inputs.length <= 1;
        const r = decoder.step(
          input ? input.address + BigInt(input.used) : 0n,
          input ? input.length - input.used : 0,
          ringAddress + BigInt(slot * slotBytes + fill),
          slotBytes - fill,
          finish,
        );
        fill += r.made;
        if (input) {
          input.used += r.used;
          if (input.used === input.length) {
            inputs.shift();
            post({ kind: 'consumed', buffer: input.buffer }, [input.buffer]);
          }
        }
        if (r.end) {
          emit();
          done = true;
          decoder.close();
          post({ kind: 'end' });
          return;
        }
        if (fill === slotBytes) {
          emit();
          break; // let the main thread's messages in
        }
      }
      schedule();
    } catch (err) {
      decoder.close();
      fail(err);
    }
  }

  port.on('message', (m: ToWorker) => {
    if (m.kind === 'input') {
      if (m.length > 0) {
        const view = new Uint8Array(m.buffer, 0, m.length);
        inputs.push({ buffer: m.buffer, address: addressOf(sys, view), length: m.length, used: 0 });
      } else post({ kind: 'consumed', buffer: m.buffer }, [m.buffer]);
    } else if (m.kind === 'end') ended = true;
    else free.push(m.slot);
    schedule();
  });
}

if (parentPort) main(parentPort, workerData as WorkerSetup);
