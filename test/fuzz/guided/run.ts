/**
 * Runs one guided target in a worker thread within its budget, restarting the worker after
 * an execution that hangs (no new execution for `hangSeconds`) or kills it; the input of such
 * an execution is saved as a finding like the crashes the worker reports itself.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CORPUS_DIR, saveSeed } from './seeds.js';
import type { GuidedJob, GuidedMessage } from './worker.js';

export interface GuidedSettings {
  execs: number;
  seconds: number;
  hangSeconds: number;
  seed: string;
  findingsDir: string;
  memoryLimitBytes: number;
  /** Copy the inputs that reached new blocks into test/fuzz/corpus (FUZZ_SAVE_CORPUS=1). */
  saveCorpus: boolean;
}

export interface GuidedReport {
  target: string;
  execs: number;
  blocks: number;
  corpus: number;
  seconds: number;
  findings: { failure: string; path: string }[];
}

export async function runGuided(
  target: string,
  dir: string,
  s: GuidedSettings,
): Promise<GuidedReport> {
  const report: GuidedReport = { target, execs: 0, blocks: 0, corpus: 0, seconds: 0, findings: [] };
  const t0 = performance.now();
  const left = () => s.seconds - (performance.now() - t0) / 1000;
  mkdirSync(dir, { recursive: true });
  // A worker that dies or hangs is replaced; at most a few times, for the same reason each time.
  for (let round = 0; round < 20 && report.execs < s.execs && left() > 1; round++) {
    const ended = await oneWorker(target, dir, s, s.execs - report.execs, left(), report);
    if (ended) break;
  }
  report.seconds = (performance.now() - t0) / 1000;
  if (s.saveCorpus) keepQueue(join(dir, 'queue'), join(CORPUS_DIR, target));
  return report;
}

/** Small inputs only: the corpus in the repository stays under 2 MiB. */
function keepQueue(queue: string, corpus: string): void {
  if (!existsSync(queue)) return;
  mkdirSync(corpus, { recursive: true });
  for (const name of readdirSync(queue)) {
    if (statSync(join(queue, name)).size <= 16 * 1024)
      copyFileSync(join(queue, name), join(corpus, name));
  }
}

function oneWorker(
  target: string,
  dir: string,
  s: GuidedSettings,
  execs: number,
  seconds: number,
  report: GuidedReport,
): Promise<boolean> {
  const counter = new SharedArrayBuffer(4);
  const job: GuidedJob = {
    target,
    dir,
    execs,
    seconds,
    findingsDir: s.findingsDir,
    counter,
    seed: s.seed,
    memoryLimitBytes: s.memoryLimitBytes,
  };
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: job,
    resourceLimits: { maxOldGenerationSizeMb: 1024 },
  });
  const started = new Int32Array(counter);
  return new Promise((resolve) => {
    let ended = false;
    let error: Error | undefined;
    let last = -1;
    let still = 0;
    const finding = (failure: string) => {
      const path = join(dir, 'current.bin');
      if (!existsSync(path)) return;
      const label = failure.startsWith('hang') ? 'hang' : 'crash';
      const saved = saveSeed(s.findingsDir, target, label, readFileSync(path));
      report.findings.push({ failure, path: saved });
    };
    const watchdog = setInterval(() => {
      const now = Atomics.load(started, 0);
      still = now === last ? still + 1 : 0;
      last = now;
      if (still >= s.hangSeconds) {
        finding(`hang: one execution ran more than ${s.hangSeconds} s`);
        error = new Error('hang');
        void worker.terminate();
      }
    }, 1000);
    worker.on('message', (m: GuidedMessage) => {
      if (m.type === 'finding') report.findings.push({ failure: m.failure, path: m.path });
      else {
        ended = true;
        report.execs += m.execs;
        report.blocks = Math.max(report.blocks, m.blocks);
        report.corpus = m.corpus;
      }
    });
    worker.on('error', (err) => {
      error = err;
    });
    worker.on('exit', () => {
      clearInterval(watchdog);
      if (!ended) {
        report.execs += Atomics.load(started, 0);
        if (error?.message !== 'hang') finding(`the worker died: ${error?.stack ?? 'exited'}`);
      }
      resolve(ended);
    });
  });
}
