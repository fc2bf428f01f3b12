/**
 * The fuzzer's driver: prepares a target's image (qemu-img), then runs its cases in a worker
 * thread with a watchdog. A case that never answers (a synchronous loop, a lost promise) or
 * kills the worker (out of memory) is reported with its seed and mutation, and the run goes on
 * from the next case in a fresh worker.
 */
import { copyFileSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LocalFile } from '../../src/io/file.js';
import { qemuMap } from '../helpers/peers.js';
import type { Prepared } from './cases.js';
import type { Limits, Outcome } from './exercise.js';
import type { Span } from './mutate.js';
import type { Target } from './targets.js';
import type { Job, WorkerMessage } from './worker.js';

export interface Settings {
  baseSeed: string;
  iterations: number;
  /** Run only this case (`target:iteration`), as a failure report says to reproduce it. */
  only: { target: string; i: number } | undefined;
  limits: Limits;
  caseTimeoutMs: number;
  memoryLimitBytes: number;
  /** Where failing case files are copied (DISKPIPE_FUZZ_KEEP). */
  keep: string | undefined;
  /** Log every case's mutation and outcome (DISKPIPE_FUZZ_VERBOSE=1, and for one case). */
  verbose: boolean;
}

export function settingsFromEnv(env = process.env): Settings {
  const only = env.DISKPIPE_FUZZ_CASE?.match(/^([\w-]+):(\d+)$/);
  return {
    baseSeed: env.DISKPIPE_FUZZ_SEED ?? 'diskpipe',
    iterations: Number(env.DISKPIPE_FUZZ_ITERATIONS ?? 60),
    only: only ? { target: only[1]!, i: Number(only[2]) } : undefined,
    limits: { readBytes: 64 << 20, zeroCheckBytes: 8 << 20 },
    caseTimeoutMs: Number(env.DISKPIPE_FUZZ_CASE_TIMEOUT_MS ?? 5000),
    memoryLimitBytes: 256 << 20,
    keep: env.DISKPIPE_FUZZ_KEEP,
    verbose: env.DISKPIPE_FUZZ_VERBOSE === '1' || Boolean(only),
  };
}

export interface Failure {
  target: string;
  i: number;
  seed: number;
  steps: string[];
  failure: string;
}

export interface Report {
  cases: number;
  opened: number;
  codes: Record<string, number>;
  slowestMs: number;
  maxMemory: number;
  failures: Failure[];
  /** Each case's mutation and outcome, when verbose. */
  log: string[];
}

/** Builds the target's image in its own directory, with an escape route next to it. */
export async function prepare(target: Target, src: string, under: string): Promise<Prepared> {
  const root = join(under, target.name);
  mkdirSync(root);
  const dir = join(root, 'w');
  mkdirSync(dir);
  // What hostile references aim at: ../o/s, a symlink out (l) and a device (d).
  mkdirSync(join(root, 'o'));
  writeFileSync(join(root, 'o', 's'), 'outside the image directory\n');
  symlinkSync('../o/s', join(dir, 'l'));
  symlinkSync('/dev/zero', join(dir, 'd'));
  const built = await target.make(dir, src);
  const pristine = join(root, `pristine-${basename(built)}`);
  copyFileSync(built, pristine);
  const siblings = readdirSync(dir).filter((n) => n !== basename(built) && n.length > 1);
  const meta = await metadataSpans(built, target.format);
  const allocated = await allocatedSpans(pristine);
  return { dir, pristine, casePath: built, siblings, meta, allocated };
}

/** File ranges that hold no guest data of this layer: what qemu-img map does not point at. */
async function metadataSpans(path: string, format?: string): Promise<Span[]> {
  const data = (await qemuMap(path, format).catch(() => []))
    .filter((e) => e.depth === 0 && e.data && e.offset !== undefined)
    .map((e) => ({ start: e.offset!, end: e.offset! + e.length }))
    .sort((a, b) => a.start - b.start);
  const file = await LocalFile.open(path);
  const out: Span[] = [];
  let pos = 0;
  for (const d of data) {
    if (d.start > pos) out.push({ start: pos, end: d.start });
    pos = Math.max(pos, d.end);
  }
  if (pos < file.size) out.push({ start: pos, end: file.size });
  await file.close();
  return out;
}

async function allocatedSpans(path: string): Promise<Span[]> {
  const file = await LocalFile.open(path);
  const out: Span[] = [];
  try {
    for (let pos = 0; pos < file.size; ) {
      const data = file.seek(pos, 'data');
      if (data === 'unsupported') return [{ start: 0, end: file.size }];
      if (data === 'eof') break;
      const hole = file.seek(data, 'hole');
      const end = typeof hole === 'number' ? hole : file.size;
      out.push({ start: data, end });
      pos = end;
    }
  } finally {
    await file.close();
  }
  return out;
}

/** Runs cases [first, end) of a prepared target; a stuck or dead worker is replaced. */
export async function fuzz(
  target: Target,
  prepared: Prepared,
  first: number,
  end: number,
  s: Settings,
): Promise<Report> {
  const report: Report = {
    cases: 0,
    opened: 0,
    codes: {},
    slowestMs: 0,
    maxMemory: 0,
    failures: [],
    log: [],
  };
  let next = first;
  while (next < end) {
    next = await runWorker(target, prepared, next, end, s, report);
  }
  return report;
}

function runWorker(
  target: Target,
  prepared: Prepared,
  first: number,
  end: number,
  s: Settings,
  report: Report,
): Promise<number> {
  const job: Job = {
    target: target.name,
    ...prepared,
    baseSeed: s.baseSeed,
    first,
    end,
    limits: s.limits,
    caseTimeoutMs: s.caseTimeoutMs,
    memoryLimitBytes: s.memoryLimitBytes,
    keep: s.keep,
  };
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: job,
    resourceLimits: { maxOldGenerationSizeMb: 512 },
  });
  return new Promise((resolve) => {
    let current: { i: number; seed: number; steps: string[] } | undefined;
    let next = first;
    let stopped = false;
    let error: Error | undefined;
    let watchdog: NodeJS.Timeout | undefined;
    const fail = (failure: string) => {
      report.failures.push({ target: target.name, ...current!, failure });
      report.cases++;
      next = current!.i + 1;
      current = undefined;
    };
    const stop = () => {
      stopped = true;
      void worker.terminate();
    };
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'start') {
        current = { i: m.i, seed: m.seed, steps: m.steps };
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          keepCase(s.keep, target.name, m.i, prepared.casePath);
          fail(`hang: no answer after ${s.caseTimeoutMs + 5000} ms (the event loop is blocked)`);
          stop();
        }, s.caseTimeoutMs + 5000);
      } else if (m.type === 'done') {
        clearTimeout(watchdog);
        const o = m.outcome;
        record(report, o, m.ms, m.memory);
        if (s.verbose && current) {
          const what = o.failure ?? (o.code ? `${o.code}: ${o.message}` : 'opened');
          report.log.push(`#${m.i} ${current.steps.join('; ')} => ${o.stage}: ${what}`);
        }
        if (o.failure) fail(`at ${o.stage}: ${o.failure}`);
        else report.cases++;
        current = undefined;
        next = m.i + 1;
        // A case that timed out may still run in the background: start afresh.
        if (o.failure?.startsWith('no answer')) stop();
      } else {
        stopped = true;
        next = end;
      }
    });
    worker.on('error', (err) => {
      error = err;
    });
    worker.on('exit', () => {
      clearTimeout(watchdog);
      const why = `worker died: ${error?.message ?? 'exited'}`;
      if (current) {
        keepCase(s.keep, target.name, current.i, prepared.casePath);
        fail(why);
      } else if (!stopped) {
        // It died between cases (building the case): charge it to the next one, and move on.
        current = { i: next, seed: 0, steps: ['(the case could not be built)'] };
        fail(why);
      }
      resolve(next);
    });
  });
}

function record(report: Report, o: Outcome, ms: number, memory: number): void {
  if (o.opened && !o.code) report.opened++;
  if (o.code) report.codes[o.code] = (report.codes[o.code] ?? 0) + 1;
  report.slowestMs = Math.max(report.slowestMs, ms);
  report.maxMemory = Math.max(report.maxMemory, memory);
}

/** Copies a failing case file to the DISKPIPE_FUZZ_KEEP directory. */
export function keepCase(keep: string | undefined, target: string, i: number, path: string): void {
  if (!keep) return;
  mkdirSync(keep, { recursive: true });
  copyFileSync(path, join(keep, `${target}-${i}-${basename(path)}`));
}

export function describeFailure(f: Failure): string {
  return [
    `${f.target} case ${f.i} (seed ${f.seed}): ${f.failure}`,
    `  mutation: ${f.steps.join('; ')}`,
    `  reproduce: DISKPIPE_FUZZ_CASE=${f.target}:${f.i} node scripts/test.mjs --fuzz fuzz/formats`,
  ].join('\n');
}
