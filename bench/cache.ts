/**
 * The image cache: `pull` over HTTP from 127.0.0.1 against the pipelines users write by hand
 * (curl + qemu-img convert; curl | gunzip to a sparse file), and the cost of a second
 * `disk create` from the cached image (the library call, process start-up excluded).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createDisk } from '../src/cache/disks.js';
import { startServer } from './http.js';
import type { BenchImages } from './images.js';
import { alternate, diskpipe, MiB, type Row, remove, summary, timed } from './util.js';

export async function benchCache(img: BenchImages, reps: number): Promise<Row[]> {
  const gz = join(img.dir, 'bench.raw.gz');
  if (!existsSync(gz))
    execFileSync('sh', ['-c', `gzip -1 -c '${img.raw}' > '${gz}.tmp' && mv '${gz}.tmp' '${gz}'`]);
  const server = await startServer({ '/disk.qcow2': img.deflate, '/disk.raw.gz': gz });
  const rows: Row[] = [];
  const cache = join(img.dir, 'bench-cache');
  const out = join(img.dir, 'pipeline.raw');
  const dl = join(img.dir, 'pipeline.dl');
  try {
    const cases: [string, string, string, string][] = [
      [
        'qcow2 deflate',
        '/disk.qcow2',
        `curl -sf -o '${dl}' URL && qemu-img convert -m 16 -W -O raw '${dl}' '${out}'`,
        'curl + qemu-img convert',
      ],
      [
        'raw.gz',
        '/disk.raw.gz',
        `curl -sf URL | gunzip | dd of='${out}' bs=1M conv=sparse status=none`,
        'curl | gunzip | dd conv=sparse',
      ],
    ];
    for (const [name, path, pipeline, peerName] of cases) {
      const url = `${server.base}${path}`;
      const runs = alternate(reps, {
        diskpipe: () => {
          rmSync(cache, { recursive: true, force: true });
          return diskpipe(['pull', '--cache-dir', cache, url]);
        },
        peer: () => {
          remove(out);
          remove(dl);
          return timed('sh', ['-c', pipeline.replace('URL', `'${url}'`)]);
        },
      });
      remove(out);
      remove(dl);
      const a = summary(runs.diskpipe!);
      const b = summary(runs.peer!);
      rows.push({
        bench: 'pull (HTTP 127.0.0.1)',
        input: name,
        ours: a.seconds,
        peer: b.seconds,
        oursMedian: a.median,
        peerMedian: b.median,
        peerName,
        rssMiB: a.rssMiB,
      });
    }
  } finally {
    server.stop();
    rmSync(cache, { recursive: true, force: true });
  }
  rows.push(...(await benchDiskCreate(img)));
  return rows;
}

/** A second disk from a cached image, on XFS with reflink (a loop mount when root) or here. */
async function benchDiskCreate(img: BenchImages): Promise<Row[]> {
  const mnt = join(img.dir, 'xfs');
  const loop = join(img.dir, 'xfs.img');
  let mounted = false;
  if (process.getuid?.() === 0) {
    mkdirSync(mnt, { recursive: true });
    execFileSync('truncate', ['-s', '24G', loop]);
    execFileSync('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', loop]);
    mounted = spawnSync('mount', ['-o', 'loop', loop, mnt]).status === 0;
  }
  const where = mounted ? mnt : img.dir;
  const cache = join(where, 'cache');
  try {
    timed(process.execPath, [
      new URL('../src/cli/main.js', import.meta.url).pathname,
      'pull',
      '--cache-dir',
      cache,
      img.raw,
    ]);
    await createDisk(img.raw, join(where, 'vm1.raw'), { cacheDir: cache });
    const used = () =>
      Number(execFileSync('df', ['--output=used', '-B1', where]).toString().split('\n')[1]);
    const before = used();
    const started = performance.now();
    const r = await createDisk(img.raw, join(where, 'vm2.raw'), { cacheDir: cache });
    const seconds = (performance.now() - started) / 1000;
    const cost = used() - before;
    const overlayStart = performance.now();
    await createDisk(img.raw, join(where, 'vm3.qcow2'), { cacheDir: cache, format: 'qcow2' });
    const overlaySeconds = (performance.now() - overlayStart) / 1000;
    const fs = mounted
      ? 'XFS reflink loop mount'
      : execFileSync('stat', ['-f', '-c', '%T', where], { encoding: 'utf8' }).trim();
    console.log(
      `disk create (2nd, ${fs}): raw ${r.strategy} ${(seconds * 1000).toFixed(1)} ms, ${(cost / MiB).toFixed(2)} MiB new disk space; qcow2 overlay ${(overlaySeconds * 1000).toFixed(1)} ms; virtual ${statSync(join(where, 'vm2.raw')).size / MiB} MiB`,
    );
    return [];
  } finally {
    rmSync(cache, { recursive: true, force: true });
    for (const f of ['vm1.raw', 'vm2.raw', 'vm3.qcow2']) remove(join(where, f));
    if (mounted) {
      spawnSync('umount', [mnt]);
      remove(loop);
    }
  }
}
