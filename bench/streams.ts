/**
 * Compressed raw streams (raw.xz, .gz, .zst, .bz2) converted in one pass, against the shell
 * pipeline `TOOL -dc X | dd of=OUT conv=sparse bs=1M`: diskpipe with its accelerators (the
 * system's liblzma/libbz2 in a worker, else the tool) and with DISKPIPE_NO_ACCEL=1 (JS/WASM
 * decoders). Issue 11's targets: ≤ 1.0× accelerated, ≤ 1.6× without.
 * The input is issue 11's perf set raw (STREAMS_RAW, default /var/tmp/dp-perf/perf.raw: 6 GiB,
 * 1.5 GiB of data), compressed once into STREAMS_DIR (default <raw's dir>/streams) with
 * `xz -T0`, `pigz` (else gzip), `zstd -T0` and `bzip2`. Each pair is timed by
 * /work/shared/tools/abbench (A B A B ..., outputs removed and `sync` before every run, medians
 * of wall, CPU and peak RSS); BENCH_LOCK=FILE runs each pair under `flock FILE` (the shared
 * machine's measuring lock), STREAMS_ONLY=xz,gz picks codecs, STREAMS_ACCEL=1|0 one mode.
 *   node dist/bench/streams.js [RUNS=5]      or  BENCH_ONLY=streams npm run bench
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ABBENCH = '/work/shared/tools/abbench';
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface StreamsBenchOptions {
  runs: number;
  raw: string;
  dir: string;
  only?: string[];
  /** Only this mode (true: accelerated, false: DISKPIPE_NO_ACCEL=1); both by default. */
  accel?: boolean;
  lock?: string;
}

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

interface Codec {
  ext: string;
  compress: string;
  decompress: string;
}

function codecs(): Codec[] {
  const gzip = has('pigz') ? 'pigz' : 'gzip';
  return [
    { ext: 'xz', compress: 'xz -T0 -c', decompress: 'xz -dc' },
    { ext: 'gz', compress: `${gzip} -c`, decompress: 'gzip -dc' },
    { ext: 'zst', compress: 'zstd -T0 -q -c', decompress: 'zstd -qdc' },
    { ext: 'bz2', compress: 'bzip2 -c', decompress: 'bzip2 -dc' },
  ];
}

/** Makes `out` with a shell command once (under a temporary name). */
function once(out: string, command: string): void {
  if (existsSync(out)) return;
  console.error(`generating ${out} (${command})...`);
  execFileSync('sh', ['-c', `${command} > '${out}.tmp' && mv '${out}.tmp' '${out}'`]);
}

export function benchStreams(o: StreamsBenchOptions): void {
  mkdirSync(o.dir, { recursive: true });
  const name = o.raw.split('/').pop()!;
  const outA = join(o.dir, 'out-diskpipe.raw');
  const outB = join(o.dir, 'out-pipeline.raw');
  const before = `rm -f '${outA}' '${outB}'; sync`;
  const modes = o.accel === undefined ? [true, false] : [o.accel];
  for (const c of codecs()) {
    if (o.only && !o.only.includes(c.ext)) continue;
    const packed = join(o.dir, `${name}.${c.ext}`);
    once(packed, `${c.compress} '${o.raw}'`);
    const pipeline = `${c.decompress} '${packed}' | dd of='${outB}' conv=sparse bs=1M status=none`;
    for (const accel of modes) {
      const env = accel ? '' : 'DISKPIPE_NO_ACCEL=1 ';
      const a = `${env}node '${CLI}' convert '${packed}' '${outA}'`;
      console.log(
        `\n${c.ext} ${accel ? 'accelerated' : 'DISKPIPE_NO_ACCEL=1'}\n  A: ${a}\n  B: ${pipeline}`,
      );
      const args = ['-n', String(o.runs), '--before', before, '-a', a, '-b', pipeline];
      const [cmd, argv] = o.lock ? ['flock', [o.lock, ABBENCH, ...args]] : [ABBENCH, args];
      const ab = spawnSync(cmd, argv, { encoding: 'utf8' });
      process.stdout.write(ab.stdout + ab.stderr);
    }
  }
  spawnSync('sh', ['-c', before]);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const raw = process.env.STREAMS_RAW ?? '/var/tmp/dp-perf/perf.raw';
  const accel = process.env.STREAMS_ACCEL;
  benchStreams({
    runs: Number(process.argv[2] ?? 5),
    raw,
    dir: process.env.STREAMS_DIR ?? join(dirname(raw), 'streams'),
    ...(process.env.STREAMS_ONLY && { only: process.env.STREAMS_ONLY.split(',') }),
    ...(accel !== undefined && { accel: accel === '1' }),
    ...(process.env.BENCH_LOCK && { lock: process.env.BENCH_LOCK }),
  });
}
