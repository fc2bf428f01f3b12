/**
 * The fuzzer's worker thread: mutates one target's image case after case and exercises each.
 * It runs apart from the test so that a case stuck in a synchronous loop can be stopped
 * (Worker.terminate) and reported with its seed. Before each case it posts the mutation, after
 * it the outcome.
 */
import { readdirSync, realpathSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { closeDecodePool } from '../../src/codec/engine.js';
import { LocalFile } from '../../src/io/file.js';
import { caseOptions, loadPlan, makeCase, type Prepared, writeCase } from './cases.js';
import { exercise, type Limits, type Outcome } from './exercise.js';
import { keepCase } from './harness.js';
import { targets } from './targets.js';

export interface Job extends Prepared {
  target: string;
  baseSeed: string;
  first: number;
  end: number;
  limits: Limits;
  caseTimeoutMs: number;
  memoryLimitBytes: number;
  keep: string | undefined;
}

export type WorkerMessage =
  | { type: 'start'; i: number; seed: number; steps: string[] }
  | { type: 'done'; i: number; outcome: Outcome; ms: number; memory: number }
  | { type: 'end' };

const job = workerData as Job;
const target = targets.find((t) => t.name === job.target)!;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);

// Every file the library opens must lie inside the image's directory (the trust rule).
const opened: { path: string; mode: string }[] = [];
const openFile = LocalFile.open;
LocalFile.open = (path: string, mode: 'r' | 'r+' | 'w+' = 'r') => {
  opened.push({ path, mode });
  return openFile.call(LocalFile, path, mode);
};
const home = realpathSync(job.dir);

function trustBroken(untrusted: boolean): string | undefined {
  for (const { path, mode } of opened) {
    if (untrusted && path !== job.casePath) return `opened ${path} for an untrusted image`;
    let real = path;
    try {
      real = realpathSync(path);
    } catch {}
    const rel = relative(home, real);
    if (rel.startsWith('..') || isAbsolute(rel)) return `opened ${path} outside ${home}`;
    if (mode !== 'r') return `opened ${path} for writing (${mode})`;
  }
  return undefined;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

const { pristine, plan } = loadPlan(target, job);

async function run(i: number): Promise<void> {
  const c = makeCase(target, pristine, plan, job.baseSeed, i);
  writeCase(job.casePath, c.bytes, job.allocated);
  post({ type: 'start', i, seed: c.seed, steps: c.steps });
  opened.length = 0;
  const fds = openFds();
  const before = process.memoryUsage();
  let peak = 0;
  const sample = () => {
    const now = process.memoryUsage();
    peak = Math.max(peak, now.arrayBuffers - before.arrayBuffers, now.rss - before.rss);
  };
  const sampler = setInterval(sample, 5);
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Outcome>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          opened: false,
          stage: 'open',
          failure: `no answer after ${job.caseTimeoutMs} ms`,
        }),
      job.caseTimeoutMs,
    );
  });
  const opts = caseOptions(c);
  const outcome = await Promise.race([exercise(job.casePath, opts, c.rng, job.limits), timeout]);
  clearTimeout(timer);
  clearInterval(sampler);
  sample();
  const ms = performance.now() - t0;
  if (!outcome.failure) {
    // The decode worker pool is process-wide (started on first use, kept for the next image):
    // stop it so that its threads' descriptors do not count as a leak of this case.
    await closeDecodePool();
    const leaked = openFds() - fds;
    const trust = trustBroken(c.untrusted);
    if (trust) outcome.failure = `trust rule broken: ${trust}`;
    else if (peak > job.memoryLimitBytes) {
      outcome.failure = `memory grew by ${Math.round(peak / 2 ** 20)} MiB`;
    } else if (leaked > 0) outcome.failure = `${leaked} file descriptor(s) left open`;
  }
  if (outcome.failure) keepCase(job.keep, job.target, i, job.casePath);
  post({ type: 'done', i, outcome, ms, memory: peak });
}

for (let i = job.first; i < job.end; i++) await run(i);
post({ type: 'end' });
