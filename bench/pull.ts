/**
 * pull in one pass against the shell pipelines it replaces: deflate and zstd qcow2, raw.xz,
 * raw.gz, raw.zst and uncompressed raw of one disk (PULL_VIRTUAL_MIB virtual, default 1024,
 * with PULL_DATA_MIB of data, default 300: 4 MiB pieces spread over the disk, half random,
 * half compressible text), plus a "cloud image": an ext4 filesystem of PULL_CLOUD_MIB virtual
 * (default 4096) made by mkfs.ext4 -d from programs and libraries of this machine's /usr (about
 * 550 MiB of data, like a Debian cloud image), as deflate and zstd qcow2. Served by
 * bench/http-serve.ts in its own process. Each pair is timed by /work/shared/tools/abbench
 * (A B A B ..., medians of wall, CPU and peak RSS), with the cache and outputs removed and
 * `sync` before every run. diskpipe's time includes the download digest and the content
 * digest; the peers' does not.
 *   node dist/bench/pull.js [RUNS=5] [DIR]      or  BENCH_ONLY=pull npm run bench
 * PULL_ONLY=cloud,raw.xz runs the cases whose names contain one of those words (`synthetic`: the
 * deflate and zstd qcow2 of the 1 GiB disk); BENCH_LOCK=FILE
 * holds `flock FILE` around each case's timed runs only (a shared machine measures one at a time).
 * The machine is shared: quote medians, and min/max to show the noise.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const MiB = 1024 * 1024;
const ABBENCH = '/work/shared/tools/abbench';
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SERVE = fileURLToPath(new URL('./http-serve.js', import.meta.url));

export interface PullBenchOptions {
  runs: number;
  dir: string;
  virtualMiB: number;
  dataMiB: number;
  /** Virtual size of the cloud image (ext4 from /usr). */
  cloudMiB?: number;
  /** Run only the cases whose names contain one of these (all when empty or absent). */
  only?: string[];
  /** `flock` this file around each case's timed runs. */
  lock?: string | undefined;
}

/** The raw disk: 4 MiB pieces of data (random and text, alternating) spread evenly. */
function makeRaw(path: string, virtualMiB: number, dataMiB: number): void {
  if (existsSync(path)) return;
  const fd = openSync(`${path}.tmp`, 'w');
  ftruncateSync(fd, virtualMiB * MiB);
  const pieces = Math.floor(dataMiB / 4);
  const stride = Math.floor((virtualMiB - 4) / pieces);
  for (let i = 0; i < pieces; i++) {
    const piece =
      i % 2 === 0
        ? randomBytes(4 * MiB)
        : Buffer.from(
            randomBytes(3 * MiB)
              .toString('base64')
              .slice(0, 4 * MiB),
          );
    writeSync(fd, piece, 0, piece.length, i * stride * MiB);
  }
  closeSync(fd);
  execFileSync('mv', [`${path}.tmp`, path]);
}

/** Directories of /usr copied into the cloud image: programs, an interpreter's library, a compiler. */
const CLOUD_TREES = [
  '/usr/bin',
  '/usr/sbin',
  '/usr/lib/python3',
  '/usr/lib/python3.11',
  '/usr/lib/gcc',
  '/usr/lib/git-core',
  '/usr/lib/postgresql',
];

/** An ext4 image filled from /usr (mkfs.ext4 -d: no root or loop device needed). */
function makeCloudRaw(path: string, dir: string, virtualMiB: number): void {
  if (existsSync(path)) return;
  const root = join(dir, 'cloud-root');
  execFileSync('rm', ['-rf', root]);
  mkdirSync(join(root, 'usr', 'lib'), { recursive: true });
  for (const tree of CLOUD_TREES.filter((t) => existsSync(t))) {
    const to = join(root, tree, '..');
    // Hard links where /usr shares the filesystem, a copy otherwise.
    const linked = spawnSync('cp', ['-al', tree, to]).status === 0;
    if (!linked) execFileSync('cp', ['-a', tree, to]);
  }
  console.error(`generating ${path}...`);
  execFileSync('nice', [
    '-n',
    '19',
    'mkfs.ext4',
    '-q',
    '-F',
    '-d',
    root,
    `${path}.tmp`,
    `${virtualMiB}M`,
  ]);
  execFileSync('rm', ['-rf', root]);
  execFileSync('mv', [`${path}.tmp`, path]);
}

/** `out`: `raw` as qcow2 with compressed clusters (made once, niced). */
function compressedQcow2(raw: string, out: string, type: 'zlib' | 'zstd'): void {
  if (existsSync(out)) return;
  console.error(`generating ${out}...`);
  const opts = ['-o', `compression_type=${type}`];
  execFileSync('nice', [
    '-n',
    '19',
    'qemu-img',
    'convert',
    '-O',
    'qcow2',
    '-c',
    ...opts,
    raw,
    `${out}.tmp`,
  ]);
  execFileSync('mv', [`${out}.tmp`, out]);
}

/** Bytes a file allocates, in MiB (its data: zero blocks are holes). */
function allocatedMiB(path: string): string {
  return ((statSync(path).blocks * 512) / MiB).toFixed(1);
}

/** Makes `out` with a shell command once (under a temporary name). */
function once(out: string, command: string): void {
  if (existsSync(out)) return;
  console.error(`generating ${out}...`);
  execFileSync('sh', ['-c', `${command} > '${out}.tmp' && mv '${out}.tmp' '${out}'`]);
}

export async function benchPull(o: PullBenchOptions): Promise<void> {
  const dir = o.dir;
  mkdirSync(dir, { recursive: true });
  const raw = join(dir, `disk-${o.virtualMiB}-${o.dataMiB}.raw`);
  makeRaw(raw, o.virtualMiB, o.dataMiB);
  const files: Record<string, string> = { raw };
  files['deflate.qcow2'] = `${raw}.deflate.qcow2`;
  compressedQcow2(raw, files['deflate.qcow2'], 'zlib');
  files['zstd.qcow2'] = `${raw}.zstd.qcow2`;
  compressedQcow2(raw, files['zstd.qcow2'], 'zstd');
  const cloudMiB = o.cloudMiB ?? 4096;
  const cloud = join(dir, `cloud-${cloudMiB}.raw`);
  const only = o.only ?? [];
  const wanted = (name: string) => only.length === 0 || only.some((w) => name.includes(w));
  // Cloud files when a cloud case runs (PULL_ONLY=qcow2 names them without the word 'cloud').
  if (['cloud deflate qcow2', 'cloud zstd qcow2'].some(wanted)) {
    makeCloudRaw(cloud, dir, cloudMiB);
    files['cloud-deflate.qcow2'] = `${cloud}.deflate.qcow2`;
    compressedQcow2(cloud, files['cloud-deflate.qcow2'], 'zlib');
    files['cloud-zstd.qcow2'] = `${cloud}.zstd.qcow2`;
    compressedQcow2(cloud, files['cloud-zstd.qcow2'], 'zstd');
  }
  // Each compressed raw only when its case runs (xz of the disk alone takes minutes).
  if (wanted('raw.xz')) {
    files.xz = `${raw}.xz`;
    once(files.xz, `xz -T2 -3 -c '${raw}'`);
  }
  if (wanted('raw.gz')) {
    files.gz = `${raw}.gz`;
    once(files.gz, `gzip -6 -c '${raw}'`);
  }
  if (wanted('raw.zst')) {
    files.zst = `${raw}.zst`;
    once(files.zst, `zstd -q -T2 -3 -c '${raw}'`);
  }

  const server = spawn(
    process.execPath,
    [SERVE, ...Object.entries(files).map(([k, v]) => `/${k}=${v}`)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const base = await new Promise<string>((resolve) =>
    createInterface({ input: server.stdout! }).once('line', (l) => resolve(l.trim())),
  );

  const cache = join(dir, 'cache');
  const out = join(dir, 'out.raw');
  const dl = join(dir, 'dl.qcow2');
  const before = `rm -rf '${cache}' '${out}' '${dl}'; sync`;
  const dd = `dd of='${out}' bs=1M conv=sparse status=none`;
  const convert = `curl -sf -o '${dl}' URL && qemu-img convert -m 16 -W -O raw '${dl}' '${out}'`;
  const cases: [string, string, string][] = [
    ['cloud deflate qcow2', 'cloud-deflate.qcow2', convert],
    ['cloud zstd qcow2', 'cloud-zstd.qcow2', convert],
    ['synthetic deflate qcow2', 'deflate.qcow2', convert],
    ['synthetic zstd qcow2', 'zstd.qcow2', convert],
    ['raw.xz', 'xz', `curl -sf URL | xz -dc | ${dd}`],
    ['raw.gz', 'gz', `curl -sf URL | gzip -dc | ${dd}`],
    ['raw.zst', 'zst', `curl -sf URL | zstd -qdc | ${dd}`],
    ['uncompressed raw', 'raw', `curl -sf URL | ${dd}`],
  ];
  console.log(
    `pull bench: ${o.virtualMiB} MiB virtual, ${o.dataMiB} MiB data, ${o.runs} paired runs (A = diskpipe pull, B = pipeline)`,
  );
  try {
    for (const [name, file, peer] of cases.filter(([name]) => wanted(name))) {
      const url = new URL(file, base.endsWith('/') ? base : `${base}/`).href;
      // Bytes written to the cache by one pull (the bound: data + 1%).
      spawnSync('sh', ['-c', before]);
      const json = execFileSync(process.execPath, [
        CLI,
        'pull',
        '--json',
        '--cache-dir',
        cache,
        url,
      ]);
      const r = JSON.parse(json.toString()) as { written: number };
      console.log(
        `\n== ${name}: pull wrote ${(r.written / MiB).toFixed(1)} MiB to the cache (the raw image allocates ${allocatedMiB(name.startsWith('cloud') ? cloud : raw)} MiB)\n   B: ${peer}`,
      );
      const lock = o.lock ? ['flock', o.lock] : [];
      const ab = spawnSync(
        lock[0] ?? ABBENCH,
        [
          ...lock.slice(1),
          ...(lock.length > 0 ? [ABBENCH] : []),
          '-n',
          String(o.runs),
          '--before',
          before,
          '-a',
          `node '${CLI}' pull --cache-dir '${cache}' '${url}'`,
          '-b',
          peer.replace('URL', `'${url}'`),
        ],
        { encoding: 'utf8' },
      );
      process.stdout.write(ab.stdout + ab.stderr);
    }
  } finally {
    server.stdin!.end();
    spawnSync('sh', ['-c', before]);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchPull({
    runs: Number(process.argv[2] ?? 5),
    dir: process.argv[3] ?? '/var/tmp/diskpipe-bench-pull',
    virtualMiB: Number(process.env.PULL_VIRTUAL_MIB ?? 1024),
    dataMiB: Number(process.env.PULL_DATA_MIB ?? 300),
    cloudMiB: Number(process.env.PULL_CLOUD_MIB ?? 4096),
    only: (process.env.PULL_ONLY ?? '').split(',').filter((w) => w !== ''),
    lock: process.env.BENCH_LOCK,
  });
}
