import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pull } from '../../src/cache/pull.js';
import { startServer } from '../helpers/http-server.js';
import { diskpipe, diskWithRandomRuns, qemuImg, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-partsync-');
const server = await startServer();
after(() => server.close());

const raw = diskWithRandomRuns(join(dir, 'disk.raw'), 32 * MiB, [1 * MiB, 20 * MiB], 2 * MiB);
const qcow2 = join(dir, 'disk.qcow2');
await qemuImg('convert', '-c', '-O', 'qcow2', raw, qcow2);
server.files.set('disk.qcow2', { path: qcow2 });
server.files.set('disk.raw', { path: raw });
const expected = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;
// 48 MiB of data, the last of it 36 MiB before the end: past 32 MiB written, a sync starts.
const big = diskWithRandomRuns(
  join(dir, 'big.raw'),
  96 * MiB,
  [0, 16 * MiB, 32 * MiB, 48 * MiB],
  12 * MiB,
);
server.files.set('big.raw', { path: big });
const zst = join(dir, 'big.raw.zst');
execFileSync('zstd', ['-q', '-f', big, '-o', zst]);
server.files.set('big.raw.zst', { path: zst });

/**
 * The files made durable (fsync/fdatasync through a FileHandle) while `run` runs; `at` is told
 * each one as it starts.
 */
async function synced(
  run: () => Promise<unknown>,
  at: (path: string) => void = () => {},
): Promise<string[]> {
  const probe = await open(raw, 'r');
  const proto = Object.getPrototypeOf(probe) as Record<'sync' | 'datasync', () => Promise<void>>;
  await probe.close();
  const paths: string[] = [];
  const saved = { sync: proto.sync, datasync: proto.datasync };
  for (const name of ['sync', 'datasync'] as const) {
    proto[name] = function (this: { fd: number }) {
      const path = readlinkSync(`/proc/self/fd/${this.fd}`);
      paths.push(path);
      at(path);
      return saved[name].call(this);
    };
  }
  try {
    await run();
  } finally {
    Object.assign(proto, saved);
  }
  return paths;
}

test('pull: a download converted alongside is not made durable (it is only deleted); the blob is', async () => {
  const cacheDir = join(dir, 'cache-qcow2');
  let digest = '';
  const paths = await synced(async () => {
    digest = (await pull(server.url('disk.qcow2'), { cacheDir })).record.contentDigest;
  });
  assert.equal(digest, expected);
  assert.deepEqual(
    paths.filter((p) => p.endsWith('.part')),
    [],
    'the partial download was synced',
  );
  assert.ok(
    paths.some((p) => p.includes('convert.raw')),
    `the converted file was synced: ${paths}`,
  );
});

test('pull: a raw download that becomes the blob as it is is made durable first', async () => {
  const cacheDir = join(dir, 'cache-raw');
  let digest = '';
  const paths = await synced(async () => {
    digest = (await pull(server.url('disk.raw'), { cacheDir })).record.contentDigest;
  });
  assert.equal(digest, expected);
  assert.ok(
    paths.some((p) => p.endsWith('.part')),
    `the downloaded file was synced before publishing: ${paths}`,
  );
});

/**
 * How far `phase` had got (bytes) at each sync of a file `isFile` names, counting only syncs
 * before 96 MiB of a bigger image: some must come while the data still streams.
 */
async function earlySyncs(
  name: string,
  cacheDir: string,
  phase: 'download' | 'convert',
  isFile: (path: string) => boolean,
): Promise<number[]> {
  let done = 0;
  const early: number[] = [];
  await synced(
    () =>
      pull(server.url(name), {
        cacheDir,
        onProgress: (p) => {
          if (p.phase === phase) done = p.done;
        },
      }),
    (path) => {
      if (isFile(path) && done < 96 * MiB) early.push(done);
    },
  );
  return early;
}

test('pull: a raw download is written back while it streams, not all at the end', async () => {
  const early = await earlySyncs('big.raw', join(dir, 'cache-big'), 'download', (path) =>
    path.endsWith('.part'),
  );
  assert.ok(early.length > 0, 'the partial download was synced only once complete');
});

test('pull: a raw.zst is written back while it converts, not all at the end', async () => {
  const early = await earlySyncs('big.raw.zst', join(dir, 'cache-zst'), 'convert', (path) =>
    path.includes('convert.raw'),
  );
  assert.ok(early.length > 0, 'the converted file was synced only once complete');
});
