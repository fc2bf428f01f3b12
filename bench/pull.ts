/**
 * pull in one pass against the shell pipelines it replaces, on the issue's images: 3 GiB
 * virtual with 164 MiB of data (half random, half compressible text, in 4 MiB pieces spread
 * over the disk) as a deflate qcow2 and as uncompressed raw, served by bench/http-serve.ts in
 * its own process. Each pair is timed by /work/shared/tools/abbench (A B A B ..., medians),
 * with the cache and outputs removed and `sync` before every run. diskpipe's time includes the
 * download digest and the content digest; the peers' does not.
 *   node dist/bench/pull.js [RUNS=5] [DIR]
 * The machine is shared: quote medians, and min/max to show the noise.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MiB = 1024 * 1024;
const ABBENCH = '/work/shared/tools/abbench';
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SERVE = fileURLToPath(new URL('./http-serve.js', import.meta.url));

const runs = Number(process.argv[2] ?? 5);
const dir = process.argv[3] ?? '/var/tmp/diskpipe-bench-pull';
mkdirSync(dir, { recursive: true });

/** 3 GiB raw with 41 pieces of 4 MiB (164 MiB): random and text, every ~75 MiB. */
function makeRaw(path: string): void {
  if (existsSync(path)) return;
  const fd = openSync(`${path}.tmp`, 'w');
  ftruncateSync(fd, 3 * 1024 * MiB);
  for (let i = 0; i < 41; i++) {
    const piece =
      i % 2 === 0
        ? randomBytes(4 * MiB)
        : Buffer.from(
            randomBytes(3 * MiB)
              .toString('base64')
              .slice(0, 4 * MiB),
          );
    writeSync(fd, piece, 0, piece.length, i * 75 * MiB);
  }
  closeSync(fd);
  execFileSync('mv', [`${path}.tmp`, path]);
}

const raw = join(dir, 'cloud.raw');
const qcow2 = join(dir, 'cloud.qcow2');
makeRaw(raw);
if (!existsSync(qcow2)) execFileSync('qemu-img', ['convert', '-c', '-O', 'qcow2', raw, qcow2]);

const server = spawn(process.execPath, [SERVE, `/cloud.raw=${raw}`, `/cloud.qcow2=${qcow2}`], {
  stdio: ['pipe', 'pipe', 'inherit'],
});
const base = await new Promise<string>((resolve) =>
  createInterface({ input: server.stdout! }).once('line', (l) => resolve(l.trim())),
);

const cache = join(dir, 'cache');
const out = join(dir, 'out.raw');
const dl = join(dir, 'dl.qcow2');
const before = `rm -rf '${cache}' '${out}' '${dl}'; sync`;
const cases: [string, string, string][] = [
  [
    'deflate qcow2 (164 MiB data, 3 GiB)',
    'cloud.qcow2',
    `curl -sf -o '${dl}' URL && qemu-img convert -m 16 -W -O raw '${dl}' '${out}'`,
  ],
  [
    'uncompressed raw (164 MiB data, 3 GiB)',
    'cloud.raw',
    `curl -sf URL | dd of='${out}' bs=1M conv=sparse status=none`,
  ],
];
try {
  for (const [name, file, peer] of cases) {
    const url = new URL(file, base.endsWith('/') ? base : `${base}/`).href;
    // Bytes written to the cache by one pull (the bound: data + 1%).
    spawnSync('sh', ['-c', before]);
    const json = execFileSync(process.execPath, [CLI, 'pull', '--json', '--cache-dir', cache, url]);
    const r = JSON.parse(json.toString()) as { written: number; allocatedSize: number };
    console.log(`\n== ${name}: pull wrote ${(r.written / MiB).toFixed(1)} MiB to the cache`);
    const ab = spawnSync(
      ABBENCH,
      [
        '-n',
        String(runs),
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
