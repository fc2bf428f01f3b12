/**
 * checksum against blksum (issue 11's target: ≤ 0.5× blksum's time, peak RSS < 256 MiB) on the
 * perf set (bench/perf-set.ts): raw, deflate qcow2 and zstd qcow2. blksum is not packaged
 * here: it is found through BLKSUM=/path or on PATH, and the rows are skipped with a printed
 * line when it is absent (BLKHASH.md has its figures for this machine class). Each input is
 * first hashed once by both to check that the digests are equal, then timed by
 * /work/shared/tools/abbench (paired A B A B, `sync` before every run, medians of wall, CPU
 * and peak RSS; BENCH_REPS pairs, default 5). blksum reads qcow2 through qemu-nbd, which it
 * spawns itself; its CPU includes qemu-nbd's.
 *   node dist/bench/checksum-blksum.js     or  BENCH_ONLY=checksum npm run bench
 * CHECKSUM_CASES=raw,zstd (substrings of the case names) runs only those cases.
 * Run it under the shared bench lock on a quiet machine; quote medians.
 * Measured 2026-12-07 under the lock (load 11-17 from niced peers), blksum 0.11.0 built from
 * source, after raw files and qcow2's uncompressed clusters were hashed from a mapping of the
 * file: raw 1.09 s vs 2.84 s (0.38×), deflate qcow2 1.75 s vs 4.95 s (0.36×), zstd qcow2
 * 1.97 s vs 5.08 s (0.38×); CPU 0.63× / 0.61× / 0.62×; digests equal; peak RSS 90 / 161 /
 * 165 MiB. blksum's wall grows more with the machine's load than ours: quote the load too.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { perfSet } from './perf-set.js';

const ABBENCH = '/work/shared/tools/abbench';
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** blksum from BLKSUM, else the first executable `blksum` on PATH. */
export function findBlksum(): string | undefined {
  const given = process.env.BLKSUM;
  if (given) return given;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const path = join(dir, 'blksum');
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

/** The hex digest a `<hex>  <name>` line starts with. */
function digestOf(command: string): string {
  const out = execFileSync('sh', ['-c', command], { encoding: 'utf8' });
  return out.trim().split(/\s+/)[0] ?? '';
}

interface AbMedians {
  wallA: number;
  wallB: number;
  cpuA: number;
  cpuB: number;
  rssA: number;
  rssB: number;
  wallRatio: number;
  cpuRatio: number;
}

/** Runs abbench and reads the median column of its table. */
function abbench(runs: number, a: string, b: string): AbMedians {
  const out = execFileSync(ABBENCH, ['-n', String(runs), '--before', 'sync', '-a', a, '-b', b], {
    encoding: 'utf8',
  });
  const median = (label: string): number => {
    const line = out.split('\n').find((l) => l.startsWith(label));
    const cells = line?.slice(label.length).trim().split(/\s+/);
    return Number(cells?.[1]);
  };
  return {
    wallA: median('A wall s'),
    wallB: median('B wall s'),
    cpuA: median('A cpu s'),
    cpuB: median('B cpu s'),
    rssA: median('A peak MiB'),
    rssB: median('B peak MiB'),
    wallRatio: median('A/B wall'),
    cpuRatio: median('A/B cpu'),
  };
}

export function benchChecksumVsBlksum(runs = Number(process.env.BENCH_REPS ?? 5)): void {
  const blksum = findBlksum();
  if (!blksum || !existsSync(blksum)) {
    console.log(
      'checksum vs blksum: skipped (no blksum: set BLKSUM=/path or put it on PATH; BLKHASH.md has its figures)',
    );
    return;
  }
  if (!existsSync(ABBENCH)) {
    console.log(`checksum vs blksum: skipped (${ABBENCH} is missing)`);
    return;
  }
  const set = perfSet();
  console.log(
    `checksum vs ${blksum} (sha256, 64 KiB blocks) on the perf set in ${set.dir}: ` +
      `${runs} paired runs, medians; target wall ≤ 0.5×, diskpipe peak RSS < 256 MiB`,
  );
  const inputs: [string, string][] = [
    ['raw', set.raw],
    ['deflate qcow2', set.deflate],
    ['zstd qcow2', set.zstd],
  ];
  const only = process.env.CHECKSUM_CASES?.split(',').filter(Boolean);
  for (const [name, path] of inputs) {
    if (only && !only.some((o) => name.includes(o))) continue;
    const a = `${quote(process.execPath)} ${quote(CLI)} checksum ${quote(path)}`;
    const b = `${quote(blksum)} ${quote(path)}`;
    const ours = digestOf(a);
    const theirs = digestOf(b);
    const same = ours === theirs && /^[0-9a-f]{64}$/.test(ours);
    const m = abbench(runs, a, b);
    console.log(`checksum ${name}:`);
    console.log(`  A: ${a}`);
    console.log(`  B: ${b}`);
    console.log(
      `  wall ${m.wallA.toFixed(2)} s vs ${m.wallB.toFixed(2)} s = ${m.wallRatio.toFixed(2)}×` +
        ` (target ≤ 0.50×)  cpu ${m.cpuA.toFixed(2)} s vs ${m.cpuB.toFixed(2)} s = ${m.cpuRatio.toFixed(2)}×` +
        `  peak RSS ${m.rssA.toFixed(0)} MiB vs ${m.rssB.toFixed(0)} MiB` +
        `  digests ${same ? 'equal' : `DIFFER (${ours} vs ${theirs})`}`,
    );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) benchChecksumVsBlksum();
