import assert from 'node:assert/strict';
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

/** The files made durable (fsync/fdatasync through a FileHandle) while `run` runs. */
async function synced(run: () => Promise<unknown>): Promise<string[]> {
  const probe = await open(raw, 'r');
  const proto = Object.getPrototypeOf(probe) as Record<'sync' | 'datasync', () => Promise<void>>;
  await probe.close();
  const paths: string[] = [];
  const saved = { sync: proto.sync, datasync: proto.datasync };
  for (const name of ['sync', 'datasync'] as const) {
    proto[name] = function (this: { fd: number }) {
      paths.push(readlinkSync(`/proc/self/fd/${this.fd}`));
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
