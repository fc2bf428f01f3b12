/**
 * The cache soak: a kill -9 matrix (pulls killed at random points, then pulled again) and a
 * concurrency matrix (prune, rm, pull and disk create racing), against a real HTTP server.
 * Used by `npm run soak` (bench/soak.ts, many runs) and by a short fixed-seed test.
 * Every check counts problems; nothing here depends on how fast the machine is.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CacheLayout, urlKey } from '../../src/cache/layout.js';
import { prune } from '../../src/cache/maintenance.js';
import { CacheIndex } from '../../src/cache/records.js';
import { verifyEntry } from '../../src/cache/verify.js';
import { startServer, type TestServer } from './http-server.js';
import { diskpipe, diskpipeAsync, qemuImg } from './peers.js';

const MiB = 1024 * 1024;

/** A small deterministic generator (mulberry32), so a seed replays the same kill points. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SoakImages {
  dir: string;
  server: TestServer;
  /** The guest-visible bytes every served image holds. */
  raw: string;
  digest: string;
  /** Served names: qcow2, deflate-compressed qcow2, xz raw. */
  names: string[];
  close(): Promise<void>;
}

/** Makes a 16 MiB disk with 3 MiB of random data in three formats and serves them. */
export async function soakImages(dir: string, bytesPerSecond: number): Promise<SoakImages> {
  mkdirSync(dir, { recursive: true });
  const raw = join(dir, 'disk.raw');
  await qemuImg('create', '-f', 'raw', raw, '16M');
  const data = join(dir, 'data.bin');
  writeFileSync(data, randomBytes(3 * MiB));
  execFileSync('dd', [`if=${data}`, `of=${raw}`, 'bs=1M', 'seek=5', 'conv=notrunc', 'status=none']);
  await qemuImg('convert', '-O', 'qcow2', raw, join(dir, 'disk.qcow2'));
  await qemuImg('convert', '-c', '-O', 'qcow2', raw, join(dir, 'deflate.qcow2'));
  execFileSync('sh', ['-c', `xz -1 -T1 -c ${raw} > ${join(dir, 'disk.raw.xz')}`]);
  const server = await startServer({ bytesPerSecond });
  const names = ['disk.qcow2', 'deflate.qcow2', 'disk.raw.xz'];
  for (const name of names) server.files.set(name, { path: join(dir, name) });
  const digest = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;
  return { dir, server, raw, digest, names, close: () => server.close() };
}

export interface SoakCounts {
  runs: number;
  corruptRecords: number;
  failedResumes: number;
  bytesRedownloaded: number;
  leftoverTemporaries: number;
  brokenDisks: number;
  /** What went wrong, one line per problem (empty when all is well). */
  problems: string[];
}

export function emptyCounts(): SoakCounts {
  return {
    runs: 0,
    corruptRecords: 0,
    failedResumes: 0,
    bytesRedownloaded: 0,
    leftoverTemporaries: 0,
    brokenDisks: 0,
    problems: [],
  };
}

/** Records that point at missing data, and blobs that do not match their digest. */
async function corruptRecords(cacheDir: string, problems: string[]): Promise<number> {
  const index = new CacheIndex(new CacheLayout(cacheDir));
  let bad = 0;
  for (const s of await index.sources()) {
    if (!(await index.blob(s.contentDigest))) {
      bad++;
      problems.push(`record ${s.url} points at missing data`);
    }
  }
  for (const entry of await index.entries()) {
    const r = await verifyEntry(index, entry);
    if (!r.ok) {
      bad++;
      problems.push(`blob ${entry.blob.contentDigest}: ${r.problem}`);
    }
  }
  return bad;
}

/** Temporary files and partial downloads left in the cache. */
function leftovers(cacheDir: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (lstatSync(path).isDirectory()) walk(path);
      else if (/\.tmp$|\.part(\.json)?$/.test(name)) out.push(path);
    }
  };
  if (existsSync(cacheDir)) walk(cacheDir);
  return out;
}

/**
 * The kill -9 matrix: each run pulls one image into a fresh cache, kills the pull at a random
 * moment of a full pull's duration, pulls again and checks the result.
 */
export async function killMatrix(
  images: SoakImages,
  runs: number,
  seed: number,
  counts: SoakCounts = emptyCounts(),
  /** Time only the first image's pull and use it for all (the short test saves two pulls). */
  calibrateOnce = false,
): Promise<SoakCounts> {
  const rand = random(seed);
  const { server } = images;
  const sentSince = (from: number, name: string) =>
    server.log.slice(from).reduce((n, e) => n + (e.path === `/${name}` ? e.sent : 0), 0);
  // How long a whole pull takes here (startup included), per image: kills spread over it.
  const duration = new Map<string, number>();
  for (const name of calibrateOnce ? images.names.slice(0, 1) : images.names) {
    const cacheDir = join(images.dir, `calibrate-${name}`);
    const t0 = performance.now();
    const r = await diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url(name)]).done;
    duration.set(name, performance.now() - t0);
    rmSync(cacheDir, { recursive: true, force: true });
    if (r.status !== 0) counts.problems.push(`calibration pull of ${name}: ${r.stderr}`);
  }
  for (let i = 0; i < runs; i++) {
    const name = images.names[i % images.names.length]!;
    const size = statSync(join(images.dir, name)).size;
    const cacheDir = join(images.dir, `kill-${seed}-${i}`);
    const killAfter = rand() * (duration.get(name) ?? duration.get(images.names[0]!)!);
    const from = server.log.length;
    const run = diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url(name)]);
    await sleep(killAfter);
    run.child.kill('SIGKILL');
    await run.done;
    const part = join(cacheDir, 'tmp', `${urlKey(server.url(name))}.part`);
    const have = existsSync(part) ? statSync(part).size : 0;
    const between = server.log.length;
    const again = await diskpipeAsync(['pull', '--cache-dir', cacheDir, server.url(name)]).done;
    counts.runs++;
    const where = `run ${i} (${name}, kill after ${killAfter.toFixed(0)} ms)`;
    if (again.status !== 0 || !again.stdout.startsWith(`${images.digest}  `)) {
      counts.corruptRecords++;
      counts.problems.push(`${where}: pull after the kill: ${again.status} ${again.stderr}`);
    }
    const resent = sentSince(between, name);
    const total = sentSince(from, name);
    if (have > 0 && resent > size - have + 1) {
      counts.failedResumes++;
      counts.problems.push(`${where}: had ${have} bytes, fetched ${resent} of ${size} again`);
    }
    counts.bytesRedownloaded += Math.max(0, total - size);
    counts.corruptRecords += await corruptRecords(cacheDir, counts.problems);
    const left = leftovers(cacheDir);
    counts.leftoverTemporaries += left.length;
    for (const f of left) counts.problems.push(`${where}: left ${f}`);
    rmSync(cacheDir, { recursive: true, force: true });
  }
  return counts;
}

interface Run {
  what: string;
  dest?: string;
  done: Promise<{ status: number | null; stdout: string; stderr: string }>;
}

function qcow2Backing(path: string): string | undefined {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '--output=json', '-U', path]).toString(),
  ) as { format: string; 'backing-filename'?: string };
  return info.format === 'qcow2' ? (info['backing-filename'] ?? '') : undefined;
}

/**
 * The concurrency matrix: each round races prune --max-size 0, rm, pull, and disk create
 * (raw and qcow2 to their own DESTs, raw and qcow2 --force to one shared DEST), then checks
 * every disk reported created against the source with qemu-img compare, that every overlay's
 * backing file exists and is pinned, and that failed creates left no DEST and no pin.
 */
export async function concurrencyMatrix(
  images: SoakImages,
  rounds: number,
  seed: number,
  counts: SoakCounts = emptyCounts(),
): Promise<SoakCounts> {
  const rand = random(seed);
  const cacheDir = join(images.dir, `race-${seed}`);
  const disks = join(images.dir, `race-disks-${seed}`);
  mkdirSync(disks, { recursive: true });
  const index = new CacheIndex(new CacheLayout(cacheDir));
  const url = images.server.url('disk.qcow2');
  const cli = (args: string[]) =>
    diskpipeAsync([...args.slice(0, 2), '--cache-dir', cacheDir, ...args.slice(2)]).done;
  for (let round = 0; round < rounds; round++) {
    const dest = (n: string) => join(disks, `${round}-${n}`);
    const runs: Run[] = [
      { what: 'prune', done: cli(['cache', 'prune', '--max-size', '0']) },
      { what: 'rm', done: cli(['cache', 'rm', url]) },
      { what: 'pull', done: cli(['pull', url]) },
      {
        what: 'raw',
        dest: dest('a.raw'),
        done: cli(['disk', 'create', '--from', url, dest('a.raw')]),
      },
      {
        what: 'qcow2',
        dest: dest('b.qcow2'),
        done: cli(['disk', 'create', '--from', url, '--format', 'qcow2', dest('b.qcow2')]),
      },
    ];
    // Two creates to one DEST, in a random order.
    const shared = dest('c.img');
    const pair: Run[] = [
      { what: 'shared raw', done: cli(['disk', 'create', '--from', url, '--force', shared]) },
      {
        what: 'shared qcow2',
        done: cli(['disk', 'create', '--from', url, '--format', 'qcow2', '--force', shared]),
      },
    ];
    runs.push(...(rand() < 0.5 ? pair : pair.reverse()));
    const results = await Promise.all(runs.map((r) => r.done));
    counts.runs++;
    const broken = (why: string) => {
      counts.brokenDisks++;
      counts.problems.push(`round ${round}: ${why}`);
    };
    const pinned = new Set(
      (await index.entries()).flatMap((e) =>
        e.pins.map((p) => `${e.blob.contentDigest}:${p.path}`),
      ),
    );
    const pinnedPaths = new Set([...pinned].map((p) => p.slice(65)));
    const checkDisk = async (path: string, what: string) => {
      const backing = qcow2Backing(path);
      if (backing !== undefined) {
        if (!existsSync(backing)) return broken(`${what}: backing file ${backing} is gone`);
        const digest = /([0-9a-f]{64})\.raw$/.exec(backing)?.[1];
        if (!pinned.has(`${digest}:${path}`)) return broken(`${what}: overlay ${path} not pinned`);
      } else if (pinnedPaths.has(path)) {
        broken(`${what}: raw disk ${path} still pinned`);
      }
      const cmp = diskpipeCompare(path, images.raw);
      if (!cmp) broken(`${what}: ${path} differs from the source`);
    };
    for (const [i, r] of runs.entries()) {
      const res = results[i]!;
      if (/internal error|\n\s+at /.test(res.stderr)) broken(`${r.what}: ${res.stderr.trim()}`);
      if (r.what === 'pull' && res.status !== 0) broken(`pull failed: ${res.stderr.trim()}`);
      if (!r.dest) continue;
      if (res.status === 0) {
        if (!existsSync(r.dest)) broken(`${r.what}: reported created, ${r.dest} missing`);
        else await checkDisk(r.dest, r.what);
      } else if (existsSync(r.dest) || pinnedPaths.has(r.dest)) {
        broken(`${r.what} failed (${res.stderr.trim()}) but left its DEST or a pin`);
      }
    }
    const sharedOk = results.slice(-2).some((r) => r.status === 0);
    if (existsSync(shared)) await checkDisk(shared, 'shared DEST');
    else if (sharedOk) broken('a create of the shared DEST succeeded but it is missing');
    if (!existsSync(shared) && pinnedPaths.has(shared)) broken('stale pin on the shared DEST');
    counts.corruptRecords += await corruptRecords(cacheDir, counts.problems);
    // Next round: the disks go away and so do their pins, so rm/prune race disk create again.
    rmSync(disks, { recursive: true, force: true });
    mkdirSync(disks, { recursive: true });
    await prune(index, { dropMissingPins: true });
  }
  const left = leftovers(cacheDir);
  counts.leftoverTemporaries += left.length;
  for (const f of left) counts.problems.push(`concurrency: left ${f}`);
  rmSync(cacheDir, { recursive: true, force: true });
  rmSync(disks, { recursive: true, force: true });
  return counts;
}

function diskpipeCompare(a: string, b: string): boolean {
  try {
    execFileSync('qemu-img', ['compare', '-U', a, b], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function formatTable(counts: SoakCounts): string {
  const cols: [string, number][] = [
    ['runs', counts.runs],
    ['corrupt records', counts.corruptRecords],
    ['failed resumes', counts.failedResumes],
    ['bytes re-downloaded', counts.bytesRedownloaded],
    ['leftover temp files', counts.leftoverTemporaries],
    ['broken disks', counts.brokenDisks],
  ];
  const widths = cols.map(([h, v]) => Math.max(h.length, String(v).length));
  const row = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join(' | ');
  return [
    row(cols.map(([h]) => h)),
    widths.map((w) => '-'.repeat(w)).join('-|-'),
    row(cols.map(([, v]) => String(v))),
  ].join('\n');
}
