/**
 * Startup bench: the CLI's time to first byte on a tiny image, next to qemu-img, with the
 * floor under it (`node -e 0`: what any Node CLI pays before its first line of code).
 * Commands alternate (diskpipe, peer, diskpipe, …) and each figure is the median of
 * STARTUP_REPS runs (default 11) after one warm-up; wall time, and user and system CPU
 * apart (system time varies a lot on this VM; user time and module counts tell changes apart).
 *
 *   npx tsc -p . && node dist/bench/startup.js     (or BENCH_ONLY=startup npm run bench)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, median } from './util.js';

const REPS = Number(process.env.STARTUP_REPS ?? 11);

interface Run {
  wallMs: number;
  userMs: number;
  sysMs: number;
  rssMiB: number;
}

export interface StartupRow {
  case: string;
  diskpipe: Run[];
  peer: string;
  peerRuns: Run[];
}

/** One run under /usr/bin/time: wall, user, system and peak RSS. */
function timed(cmd: string, args: string[]): Run {
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '__TIME__ %U %S %M', cmd, ...args], {
    encoding: 'utf8',
  });
  const wallMs = performance.now() - started;
  const m = /__TIME__ ([\d.]+) ([\d.]+) (\d+)/.exec(r.stderr ?? '');
  if (r.status !== 0 || !m) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return {
    wallMs,
    userMs: Number(m[1]) * 1000,
    sysMs: Number(m[2]) * 1000,
    rssMiB: Number(m[3]) / 1024,
  };
}

export function run(): StartupRow[] {
  const dir = mkdtempSync(join(tmpdir(), 'diskpipe-bench-startup-'));
  try {
    const tiny = join(dir, 'tiny.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', tiny, '1M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x61 0 64k', tiny], {
      stdio: 'ignore',
    });
    const node = process.execPath;
    const cases: [string, string[], string, string[]][] = [
      ['--version', [CLI, '--version'], 'qemu-img', ['--version']],
      ['info tiny.qcow2', [CLI, 'info', tiny], 'qemu-img', ['info', tiny]],
      [
        'info --output=json',
        [CLI, 'info', '--output=json', tiny],
        'qemu-img',
        ['info', '--output=json', tiny],
      ],
      ['map tiny.qcow2', [CLI, 'map', tiny], 'qemu-img', ['map', tiny]],
      ['floor: node -e 0', ['-e', '0'], 'qemu-img', ['--version']],
    ];
    const rows = cases.map(([name]) => ({
      case: name,
      diskpipe: [] as Run[],
      peer: 'qemu-img',
      peerRuns: [] as Run[],
    }));
    for (let i = 0; i <= REPS; i++) {
      cases.forEach(([, args, peer, peerArgs], k) => {
        const a = timed(node, args);
        const b = timed(peer, peerArgs);
        if (i === 0) return; // warm-up: page cache, first-run costs
        rows[k]!.diskpipe.push(a);
        rows[k]!.peerRuns.push(b);
      });
    }
    print(rows);
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function print(rows: StartupRow[]): void {
  const f = (runs: Run[], key: keyof Run) => median(runs.map((r) => r[key])).toFixed(0);
  const cell = (runs: Run[]) =>
    `${f(runs, 'wallMs').padStart(5)} ms (user ${f(runs, 'userMs').padStart(4)}, sys ${f(runs, 'sysMs').padStart(3)}, ${f(runs, 'rssMiB')} MiB)`;
  process.stdout.write(
    `startup: median of ${REPS} runs; wall (user, sys CPU, peak RSS); the floor row runs ` +
      'node alone\n',
  );
  for (const r of rows) {
    process.stdout.write(
      `${r.case.padEnd(20)} diskpipe ${cell(r.diskpipe)}   ${r.peer} ${cell(r.peerRuns)}\n`,
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run();
}
