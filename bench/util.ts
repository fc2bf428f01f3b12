/** Shared bench helpers: timed child processes with peak RSS, medians, table printing. */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** The built CLI (dist/src/cli/main.js). */
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface Timing {
  seconds: number;
  /** Peak resident set size in MiB (from /usr/bin/time), when available. */
  rssMiB?: number;
  /** CPU time over wall time, in percent (200 = both cores of two busy). */
  cpuPercent?: number;
  /** User and system CPU seconds (reported apart: on this VM system time swings with page state). */
  user?: number;
  sys?: number;
  stdout: string;
}

const TIME = '/usr/bin/time';

/** Runs a command to completion; throws with its stderr if it fails (exit codes in `ok`). */
export function timed(cmd: string, args: string[], ok: number[] = [0]): Timing {
  const useTime = existsSync(TIME);
  const argv = useTime ? ['-f', '__TIME__ %e %M %P %U %S', cmd, ...args] : args;
  const started = performance.now();
  const r = spawnSync(useTime ? TIME : cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = (performance.now() - started) / 1000;
  const status = r.status ?? -1;
  const stderr = r.stderr ?? '';
  const m = /__TIME__ ([\d.]+) (\d+) (\d+)% ([\d.]+) ([\d.]+)/.exec(stderr);
  if (!ok.includes(status)) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited ${status}: ${stderr.replace(/__TIME__.*/, '')}`,
    );
  }
  const t: Timing = { seconds, stdout: r.stdout ?? '' };
  if (m) {
    t.rssMiB = Number(m[2]) / 1024;
    t.cpuPercent = Number(m[3]);
    t.user = Number(m[4]);
    t.sys = Number(m[5]);
  }
  return t;
}

export function diskpipe(args: string[], ok?: number[]): Timing {
  return timed(process.execPath, [CLI, ...args], ok);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function remove(path: string): void {
  rmSync(path, { force: true });
}

export interface Row {
  bench: string;
  input: string;
  /** Best-of-N seconds, and the medians. */
  ours: number;
  peer: number;
  oursMedian: number;
  peerMedian: number;
  peerName: string;
  rssMiB: number | undefined;
  note?: string;
}

export function printRows(rows: Row[]): void {
  const header = [
    'bench',
    'input',
    'diskpipe s',
    'peer s',
    'ratio',
    'median ratio',
    'peak RSS',
    'peer',
  ];
  const lines = rows.map((r) => [
    r.bench,
    r.input,
    r.ours.toFixed(2),
    r.peer.toFixed(2),
    `${(r.ours / r.peer).toFixed(2)}x`,
    `${(r.oursMedian / r.peerMedian).toFixed(2)}x`,
    r.rssMiB !== undefined ? `${r.rssMiB.toFixed(0)} MiB` : '-',
    r.peerName + (r.note ? ` (${r.note})` : ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
}

/** Alternates the candidates `reps` times (so drift hits both) and returns their timings. */
export function alternate(
  reps: number,
  runs: Record<string, () => Timing>,
): Record<string, Timing[]> {
  const out: Record<string, Timing[]> = {};
  for (let i = 0; i < reps; i++) {
    for (const [name, fn] of Object.entries(runs)) {
      // Untimed: no run may pay for the writeback of the previous run's output.
      spawnSync('sync');
      const list = out[name] ?? [];
      list.push(fn());
      out[name] = list;
    }
  }
  return out;
}

export interface Summary {
  /** Best of the runs: the machine is shared, and interference only ever adds time. */
  seconds: number;
  median: number;
  rssMiB: number | undefined;
  cpuPercent: number | undefined;
  /** Median user and system CPU seconds. */
  user: number | undefined;
  sys: number | undefined;
}

/** "user U s sys S s" of a summary (medians), or '' without /usr/bin/time. */
export function cpuSplit(s: Summary): string {
  if (s.user === undefined || s.sys === undefined) return '';
  return `user ${s.user.toFixed(2)}s sys ${s.sys.toFixed(2)}s`;
}

export function summary(ts: Timing[]): Summary {
  const rss = ts.map((t) => t.rssMiB).filter((x): x is number => x !== undefined);
  const cpu = ts.map((t) => t.cpuPercent).filter((x): x is number => x !== undefined);
  const user = ts.map((t) => t.user).filter((x): x is number => x !== undefined);
  const sys = ts.map((t) => t.sys).filter((x): x is number => x !== undefined);
  return {
    seconds: Math.min(...ts.map((t) => t.seconds)),
    median: median(ts.map((t) => t.seconds)),
    rssMiB: rss.length ? Math.max(...rss) : undefined,
    cpuPercent: cpu.length ? median(cpu) : undefined,
    user: user.length ? median(user) : undefined,
    sys: sys.length ? median(sys) : undefined,
  };
}
