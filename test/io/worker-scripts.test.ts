/**
 * Worker scripts can be given a path (bundlers, Electron asar): the decode and hash pools
 * start the scripts set with setWorkerScripts, and fail with the script's name when it is
 * missing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StreamDigests } from '../../src/cache/stream-digest.js';
import { closeDecodePool, decodeStats, setInlineDecodeBytes } from '../../src/codec/engine.js';
import { checksumImage, openImage, setWorkerScripts } from '../../src/index.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-workers-');
const MiB = 1024 * 1024;
const raw = join(dir, 'disk.raw');
await qemuImg('create', '-f', 'raw', raw, '4M');
await qemuIo(raw, ['write -P 0x5a 0 3M'], 'raw');
const compressed = join(dir, 'disk.qcow2');
await qemuImg('convert', '-c', '-O', 'qcow2', raw, compressed);

/** A script elsewhere that runs the package's worker (what a bundle's worker entry does). */
function wrapper(name: string, real: string): string {
  const path = join(dir, `${name}.mjs`);
  const target = pathToFileURL(fileURLToPath(new URL(real, import.meta.url))).href;
  writeFileSync(path, `await import(${JSON.stringify(target)});\n`);
  return path;
}

after(async () => {
  setWorkerScripts({ decode: undefined, hash: undefined, digest: undefined });
  setInlineDecodeBytes(64 * 1024);
  await closeDecodePool();
});

async function digest(threads: number): Promise<string> {
  const image = await openImage(raw);
  try {
    return (await checksumImage(image, { threads })).digest;
  } finally {
    await image.close();
  }
}

test('workers: the hash pool starts the script it is given', async () => {
  const inline = await digest(0);
  setWorkerScripts({ hash: join(dir, 'missing-hash-worker.js') });
  await assert.rejects(digest(1), { message: /missing-hash-worker/ });
  setWorkerScripts({ hash: wrapper('hash', '../../src/ops/checksum/worker.js') });
  assert.equal(await digest(1), inline);
});

test('workers: the decode pool starts the script it is given', async () => {
  setInlineDecodeBytes(0); // every batch on a worker
  const read = async () => {
    const image = await openImage(compressed);
    try {
      const buf = Buffer.alloc(MiB);
      await image.read(buf, MiB);
      return buf;
    } finally {
      await image.close();
    }
  };
  await closeDecodePool();
  setWorkerScripts({ decode: join(dir, 'missing-decode-worker.js') });
  await assert.rejects(read(), { message: /missing-decode-worker/ });
  await closeDecodePool();
  setWorkerScripts({ decode: wrapper('decode', '../../src/codec/worker.js') });
  const before = decodeStats.worker;
  const buf = await read();
  assert.ok(decodeStats.worker > before, 'decoded on a worker');
  assert.ok(buf.equals(Buffer.alloc(MiB, 0x5a)));
});

test('workers: the download digest worker starts the script it is given', async () => {
  const data = Buffer.alloc(3 << 20, 0x5a);
  const sha256 = createHash('sha256').update(data).digest('hex');
  const run = async () => {
    const s = new StreamDigests(['sha256']);
    try {
      await s.update(data);
      return (await s.finish()).sha256;
    } finally {
      s.close();
    }
  };
  setWorkerScripts({ digest: join(dir, 'missing-digest-worker.js') });
  await assert.rejects(run(), { message: /missing-digest-worker/ });
  setWorkerScripts({ digest: wrapper('digest', '../../src/cache/stream-digest-worker.js') });
  assert.equal(await run(), sha256);
  setWorkerScripts({ digest: undefined });
});
