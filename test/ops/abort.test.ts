/**
 * AbortSignal on every long operation: an abort fired part-way (by the operation's own
 * progress callback, never by a timer) rejects with AbortError (code ABORTED) and leaves no
 * output and no temporary file.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  checksumImage,
  cloneFile,
  compareImages,
  convertImage,
  type Image,
  openImage,
  type Progress,
} from '../../src/index.js';
import { startServer } from '../helpers/http-server.js';
import { qemuImg, sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-abort-');
// 64 MiB with 48 MiB of data: many work units for every operation.
const raw = sparseFile(join(dir, 'disk.raw'), 64 * MiB);
writeFileSync(join(dir, 'data.bin'), randomBytes(48 * MiB));
execFileSync('dd', [
  `if=${join(dir, 'data.bin')}`,
  `of=${raw}`,
  'bs=1M',
  'seek=8',
  'conv=notrunc,sparse',
  'status=none',
]);
const qcow2 = join(dir, 'disk.qcow2');
await qemuImg('convert', '-O', 'qcow2', raw, qcow2);

/** A signal and a progress callback that fires it once `done` passes `after` bytes. */
function abortAfter(after: number) {
  const ac = new AbortController();
  const seen: Progress[] = [];
  const onProgress = (p: Progress) => {
    seen.push(p);
    if (p.done > after) ac.abort();
  };
  return { signal: ac.signal, onProgress, seen };
}

/** Names in the output directory other than the inputs. */
function outputsIn(outDir: string): string[] {
  return readdirSync(outDir);
}

async function withImage<T>(path: string, fn: (image: Image) => Promise<T>): Promise<T> {
  const image = await openImage(path);
  try {
    return await fn(image);
  } finally {
    await image.close();
  }
}

for (const format of ['raw', 'qcow2'] as const) {
  test(`abort: convert to ${format} stops part-way and leaves no output or temporary file`, async () => {
    const outDir = tempDir('diskpipe-abort-out-');
    const a = abortAfter(0);
    await withImage(qcow2, (src) =>
      assert.rejects(
        convertImage(src, join(outDir, `out.${format}`), {
          format,
          signal: a.signal,
          onProgress: a.onProgress,
          requestSize: MiB,
          inFlight: 1,
        }),
        { name: 'AbortError', code: 'ABORTED' },
      ),
    );
    const last = a.seen.at(-1)!;
    assert.ok(last.done < 64 * MiB && last.phase === 'copy', `stopped at ${last.done}`);
    assert.deepEqual(outputsIn(outDir), []);
  });
}

test('abort: compare and checksum stop part-way with AbortError', async () => {
  const c = abortAfter(0);
  await withImage(raw, (a) =>
    withImage(qcow2, (b) =>
      assert.rejects(
        compareImages(a, b, {
          signal: c.signal,
          onProgress: c.onProgress,
          requestSize: MiB,
          inFlight: 1,
        }),
        {
          code: 'ABORTED',
        },
      ),
    ),
  );
  assert.ok(c.seen.every((p) => p.phase === 'compare'));
  assert.ok(c.seen.at(-1)!.done < 64 * MiB);

  const h = abortAfter(0);
  await withImage(qcow2, (image) =>
    assert.rejects(
      checksumImage(image, {
        signal: h.signal,
        onProgress: h.onProgress,
        windowSize: MiB,
        inFlight: 1,
        threads: 0,
      }),
      { code: 'ABORTED' },
    ),
  );
  assert.ok(h.seen.every((p) => p.phase === 'checksum' && p.total === 64 * MiB));
  assert.ok(h.seen.at(-1)!.done < 64 * MiB);
});

test('abort: a sparse-copy clone stops between pieces and leaves no file', async () => {
  const outDir = tempDir('diskpipe-abort-clone-');
  const a = abortAfter(8 * MiB);
  await assert.rejects(
    cloneFile(raw, join(outDir, 'clone.raw'), {
      strategy: 'sparse-copy',
      signal: a.signal,
      onProgress: a.onProgress,
    }),
    { code: 'ABORTED' },
  );
  assert.ok(a.seen.at(-1)!.done < 64 * MiB, `stopped at ${a.seen.at(-1)!.done}`);
  assert.deepEqual(outputsIn(outDir), []);
  // Without a signal it copies the whole file, reporting progress up to the end.
  const done: number[] = [];
  await cloneFile(raw, join(outDir, 'clone.raw'), {
    strategy: 'sparse-copy',
    onProgress: (p) => done.push(p.done),
  });
  assert.ok(done.length > 1 && done.every((d) => d < 64 * MiB), done.join(','));
  assert.ok(existsSync(join(outDir, 'clone.raw')));
});

test('abort: an HTTP image opened with a signal fails its reads with AbortError once aborted', async () => {
  const server = await startServer();
  after(() => server.close());
  server.files.set('disk.qcow2', { path: qcow2 });
  await assert.rejects(openImage(server.url('disk.qcow2'), { signal: AbortSignal.abort() }), {
    code: 'ABORTED',
  });
  assert.equal(server.log.length, 0, 'an aborted signal sends no request');
  const ac = new AbortController();
  const image = await openImage(server.url('disk.qcow2'), { signal: ac.signal });
  try {
    const buf = new Uint8Array(MiB);
    await image.read(buf, 8 * MiB);
    ac.abort();
    await assert.rejects(image.read(buf, 40 * MiB), { code: 'ABORTED' });
  } finally {
    await image.close();
  }
});

test('abort: opening an NBD export whose server never answers stops when the signal fires', async () => {
  // A server that accepts and then says nothing: the handshake would wait for its timeout.
  const sockets: Socket[] = [];
  const ac = new AbortController();
  const server = createServer((s) => {
    sockets.push(s);
    ac.abort(); // the client is connected and waiting for the greeting
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await assert.rejects(openImage(`nbd://127.0.0.1:${port}/`, { signal: ac.signal }), {
      code: 'ABORTED',
    });
    assert.equal(sockets.length, 1);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});
