/**
 * Benchmarks against the peers, in one run: convert (qemu-img convert), compare (qemu-img
 * compare), clone (cp). `npm run bench`. Settings from the environment:
 *   BENCH_DIR        where images live (default /var/tmp/diskpipe-bench; kept between runs)
 *   BENCH_DATA_MIB   data in the 8 GiB image (default 2048)
 *   BENCH_REPS       repetitions per command (default 5; best-of and median reported)
 *   BENCH_ONLY       comma list of convert,compare,clone,formats,outformats,cache,checksum,
 *                    nbd,http,stall (default: all), and perf (issue 11's perf set: convert
 *                    of its raw, qcow2, deflate and zstd qcow2 and streamOptimized vmdk, and of the
 *                    ext4 root file system image in all five forms, against qemu-img;
 *                    compare of its raw and deflate qcow2 against qemu-img compare; only
 *                    when named), and
 *                    pull (bench/pull.ts: pull vs curl + qemu-img/xz/gzip/zstd/dd; only when
 *                    named; PULL_VIRTUAL_MIB, PULL_DATA_MIB size its disk), startup
 *                    (bench/startup.ts: --version, info, map of a tiny qcow2 vs qemu-img, and
 *                    the `node -e 0` floor; only when named; STARTUP_REPS runs, default 11),
 *                    and streams (bench/streams.ts: convert of raw.xz/.gz/.zst/.bz2 vs
 *                    `TOOL -dc | dd`; only when named; STREAMS_RAW, STREAMS_ONLY, BENCH_LOCK)
 *   BENCH_PERF_DIR   where the perf set lives (default /var/tmp/dp-perf)
 *   NBD_BENCH_SET    perf: the nbd bench serves the perf set's deflate and zstd qcow2
 *                    (NBD_BENCH_IMAGES=deflate or zstd picks one) instead of its 1 GiB images
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatDriver } from '../src/formats/registry.js';
import { benchCache } from './cache.js';
import { run as benchChecksum } from './checksum.js';
import { benchClone } from './clone.js';
import { benchCompare } from './compare.js';
import { benchConvert } from './convert.js';
import { benchFormats } from './formats.js';
import { run as benchHttp } from './http.js';
import { benchImages } from './images.js';
import { run as benchNbd } from './nbd.js';
import { benchOutputFormats } from './output-formats.js';
import { perfSet, rootfsSet } from './perf-set.js';
import { benchPull } from './pull.js';
import { benchStall } from './stall.js';
import { run as benchStartup } from './startup.js';
import { benchStreams } from './streams.js';
import { MiB, printRows, type Row } from './util.js';
import '../src/formats/index.js';

const dir = process.env.BENCH_DIR ?? '/var/tmp/diskpipe-bench';
const dataMiB = Number(process.env.BENCH_DATA_MIB ?? 2048);
const reps = Number(process.env.BENCH_REPS ?? 5);
const only = new Set(
  (
    process.env.BENCH_ONLY ??
    'convert,compare,clone,formats,outformats,cache,checksum,nbd,http,stall'
  ).split(','),
);

if (only.has('startup')) {
  console.log('startup (time to first byte)');
  benchStartup();
  only.delete('startup');
  if (only.size === 0) process.exit(0);
}

if (only.has('pull')) {
  await benchPull({
    runs: reps,
    dir: join(dir, 'pull'),
    virtualMiB: Number(process.env.PULL_VIRTUAL_MIB ?? 1024),
    dataMiB: Number(process.env.PULL_DATA_MIB ?? 300),
  });
  only.delete('pull');
  // The pull bench makes its own images: the 8 GiB set is not needed for it alone.
  if (only.size === 0) process.exit(0);
}

if (only.has('streams')) {
  const raw = process.env.STREAMS_RAW ?? perfSet().raw;
  benchStreams({
    runs: reps,
    raw,
    dir: process.env.STREAMS_DIR ?? join(dirname(raw), 'streams'),
    ...(process.env.STREAMS_ONLY && { only: process.env.STREAMS_ONLY.split(',') }),
    ...(process.env.BENCH_LOCK && { lock: process.env.BENCH_LOCK }),
  });
  only.delete('streams');
  if (only.size === 0) process.exit(0);
}

const img = benchImages(dir, dataMiB);
const qcow2 = formatDriver('qcow2') !== undefined;
const fsName = execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
console.log(
  `diskpipe bench: 8 GiB virtual, ${dataMiB} MiB data, ${reps} reps (best of, and median), dir ${dir} (${fsName})`,
);
if (!qcow2) console.log('note: no qcow2 reader registered: qcow2 inputs skipped');

const rows: Row[] = [];
if (only.has('convert')) {
  const inputs: [string, string][] = [['raw', img.raw]];
  if (qcow2)
    inputs.push(['qcow2', img.qcow2], ['qcow2 deflate', img.deflate], ['qcow2 zstd', img.zstd]);
  rows.push(...benchConvert(img, reps, inputs));
}
if (only.has('perf') && qcow2) {
  const set = perfSet();
  const inputs: [string, string][] = [
    ['perf set raw', set.raw],
    ['perf set qcow2', set.qcow2],
    ['perf set deflate', set.deflate],
    ['perf set zstd', set.zstd],
    ['perf set streamOptimized vmdk', set.vmdk],
  ];
  const perfImages = { ...set, dataBytes: 48 * 32 * MiB };
  rows.push(...benchConvert(perfImages, reps, inputs));
  rows.push(...benchCompare(perfImages, reps, [['perf set raw vs deflate', set.raw, set.deflate]]));
  const rootfs = rootfsSet();
  const forms: [string, string][] = [
    ['rootfs raw', rootfs.raw],
    ['rootfs qcow2', rootfs.qcow2],
    ['rootfs deflate', rootfs.deflate],
    ['rootfs zstd', rootfs.zstd],
    ['rootfs streamOptimized vmdk', rootfs.vmdk],
  ];
  rows.push(
    ...benchConvert({ ...rootfs, dataBytes: statSync(rootfs.raw).blocks * 512 }, reps, forms),
  );
}
if (only.has('compare')) {
  const pairs: [string, string, string][] = [['raw vs raw', img.raw, 'copy']];
  if (qcow2) {
    pairs.push(['raw vs qcow2', img.raw, img.qcow2], ['qcow2 vs deflate', img.qcow2, img.deflate]);
    pairs.push(['raw vs deflate', img.raw, img.deflate], ['raw vs zstd', img.raw, img.zstd]);
  }
  rows.push(...benchCompare(img, reps, pairs));
}
if (only.has('clone')) rows.push(...benchClone(img, reps, fsName));
if (only.has('formats')) rows.push(...benchFormats(img, reps));
if (only.has('outformats')) rows.push(...benchOutputFormats(img, reps));
if (only.has('cache')) rows.push(...(await benchCache(img, reps)));
console.log('');
printRows(rows);
// The checksum, NBD and HTTP benches print their own tables.
if (only.has('checksum')) {
  console.log('\nchecksum');
  await benchChecksum();
}
if (only.has('nbd')) {
  console.log('\nnbd');
  await benchNbd();
}
if (only.has('http')) {
  console.log('\nhttp ranges');
  await benchHttp();
}
if (only.has('stall')) {
  console.log('\nevent-loop stalls (in process)');
  await benchStall(img);
}
