/**
 * The guided fuzzer's worker thread, for one target: runs the corpus, then mutates inputs
 * from it and keeps every input that reached a block of dist/src no input reached before.
 * Before each execution it writes the input to `current.bin` and bumps a shared counter, so
 * the parent can save the input of an execution that never ends or kills the thread.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { hashSeed, type MutationPlan, mutate, Rng, type Span } from '../mutate.js';
import { BlockCoverage } from './coverage.js';
import { CORPUS_DIR, loadSeeds, saveSeed } from './seeds.js';

// Coverage starts before diskpipe's code is loaded: V8 counts blocks of functions compiled
// after that (functions compiled earlier would only count as a whole).
const coverage = new BlockCoverage();
await coverage.start();
const { Context, guidedTargets, resetReads } = await import('./targets.js');

export interface GuidedJob {
  target: string;
  dir: string;
  /** Executions and seconds left in this target's budget. */
  execs: number;
  seconds: number;
  /** Where findings are saved (test/fuzz/regressions). */
  findingsDir: string;
  /** Executions started, shared with the parent (index 0). */
  counter: SharedArrayBuffer;
  seed: string;
  memoryLimitBytes: number;
}

export type GuidedMessage =
  | { type: 'finding'; failure: string; path: string }
  | { type: 'end'; execs: number; blocks: number; corpus: number };

const job = workerData as GuidedJob;
const target = guidedTargets.find((t) => t.name === job.target)!;
const counter = new Int32Array(job.counter);
const post = (m: GuidedMessage) => parentPort!.postMessage(m);
process.env.DISKPIPE_TMPDIR = job.dir;
const ctx = new Context(job.dir);
const queue = join(job.dir, 'queue');
const current = join(job.dir, 'current.bin');

interface Entry {
  bytes: Uint8Array;
  plan: MutationPlan;
}

/** Mutations aim at the first 4 KiB and at non-zero 4 KiB blocks (headers and tables). */
function planFor(bytes: Uint8Array): MutationPlan {
  const hot: Span[] = [{ start: 0, end: Math.min(bytes.length, 4096) }];
  for (let at = 4096; at < bytes.length && hot.length < 512; at += 4096) {
    const end = Math.min(bytes.length, at + 4096);
    if (bytes.subarray(at, end).some((b) => b !== 0)) hot.push({ start: at, end });
  }
  return {
    hot,
    meta: [],
    refs: [],
    bigEndian: target.bigEndian ?? false,
    // Text (a descriptor): no NUL in its first KiB.
    text: target.words !== undefined && !bytes.subarray(0, 1024).includes(0),
    words: target.words ?? [],
    hostile: () => [],
  };
}

const seen = new Set<string>();

async function execute(bytes: Uint8Array): Promise<string | undefined> {
  writeFileSync(current, bytes);
  Atomics.add(counter, 0, 1);
  resetReads();
  const before = process.memoryUsage();
  let peak = 0;
  const sample = () => {
    const now = process.memoryUsage();
    peak = Math.max(
      peak,
      now.arrayBuffers - before.arrayBuffers,
      now.heapUsed - before.heapUsed,
      now.external - before.external,
    );
  };
  const sampler = setInterval(sample, 10);
  let failure: string | undefined;
  try {
    failure = await target.run(bytes, ctx);
  } catch (err) {
    failure = `the target threw: ${(err as Error)?.stack ?? String(err)}`;
  }
  clearInterval(sampler);
  sample();
  if (!failure && peak > job.memoryLimitBytes) {
    failure = `allocation beyond budget: ${Math.round(peak / 2 ** 20)} MiB in one execution`;
  }
  if (failure) {
    // One file per kind of failure: the message without its numbers.
    const kind = failure.replace(/\d+/g, 'N').slice(0, 200);
    if (!seen.has(kind)) {
      seen.add(kind);
      const label = failure.startsWith('hang')
        ? 'hang'
        : failure.startsWith('alloc')
          ? 'oom'
          : 'crash';
      post({ type: 'finding', failure, path: saveSeed(job.findingsDir, job.target, label, bytes) });
    }
  }
  return failure;
}

const corpus: Entry[] = [];
const start = performance.now();
let execs = 0;
for (const s of [...loadSeeds(CORPUS_DIR, job.target), ...loadSeeds(job.dir, 'queue')]) {
  await execute(s.bytes);
  execs++;
  await coverage.take();
  corpus.push({ bytes: s.bytes, plan: planFor(s.bytes) });
}
if (corpus.length === 0)
  corpus.push({ bytes: new Uint8Array(512), plan: planFor(new Uint8Array(512)) });

const rng = new Rng(hashSeed(`${job.seed}:${job.target}:${Atomics.load(counter, 0)}`));
while (execs < job.execs && performance.now() - start < job.seconds * 1000) {
  // Newer entries (deeper inputs) are picked more often than the seeds.
  const i = rng.chance(0.5)
    ? corpus.length - 1 - rng.int(Math.min(corpus.length, 16))
    : rng.int(corpus.length);
  const parent = corpus[i]!;
  let { bytes } = mutate(parent.bytes, parent.plan, rng);
  if (rng.chance(0.1) && corpus.length > 1) bytes = splice(bytes, rng.pick(corpus).bytes, rng);
  await execute(bytes);
  execs++;
  if ((await coverage.take()) > 0 && bytes.length <= 16 << 20) {
    corpus.push({ bytes, plan: planFor(bytes) });
    saveSeed(queue, '.', 'cov', bytes);
  }
}
coverage.stop();
await ctx.close();
post({ type: 'end', execs, blocks: coverage.seen.size, corpus: corpus.length });

/** Copies a run of another input over this one, at the same offset (formats share layouts). */
function splice(into: Uint8Array, from: Uint8Array, r: Rng): Uint8Array {
  const at = r.int(Math.max(1, Math.min(into.length, from.length)));
  const n = Math.min(1 + r.int(4096), from.length - at, into.length - at);
  if (n > 0) into.set(from.subarray(at, at + n), at);
  return into;
}
