import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { HttpSource } from '../../src/sources/http.js';
import { openStream } from '../../src/sources/open-stream.js';
import { readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';
import { serveFiles } from './http-server.js';

const dir = tempDir();
/** Fast failure settings so error cases take milliseconds. */
const QUICK = { retries: 2, retryDelayMs: 5, timeoutMs: 2000 };

/** A raw file of odd size with random data in a few places. */
function makeRaw(name: string, size: number): string {
  const path = sparseFile(join(dir, name), size);
  const fd = openSync(path, 'r+');
  for (const at of [0, 300_000, 1_234_567, size - 5000]) {
    if (at + 5000 <= size) writeSync(fd, randomBytes(5000), 0, 5000, at);
  }
  closeSync(fd);
  return path;
}

const raw = makeRaw('disk.raw', 3 * 1024 * 1024 + 777);

test('http: a raw image read over ranges equals the file; untrusted; no HEAD needed', async () => {
  const server = await serveFiles({ '/disk.raw': raw }, { head: false });
  try {
    const image = await openImage(server.url('/disk.raw'), {
      http: { blockSize: 64 * 1024, cacheBytes: 256 * 1024 },
    });
    try {
      assert.equal(image.format, 'raw');
      assert.equal(image.size, 3 * 1024 * 1024 + 777);
      assert.deepEqual(await readAll(image), readFileSync(raw));
      // Random reads across block boundaries after eviction from the small cache.
      const buf = new Uint8Array(100_000);
      await image.read(buf, 1_200_000);
      assert.deepEqual(Buffer.from(buf), readFileSync(raw).subarray(1_200_000, 1_300_000));
    } finally {
      await image.close();
    }
    assert.ok(server.log.every((r) => r.method === 'GET' && r.range?.startsWith('bytes=')));
  } finally {
    await server.close();
  }
});

test('http: an image from the network may not reference files', async () => {
  // qemu-img writes the backing reference; the trust rule must refuse it over HTTP.
  const base = makeRaw('base.raw', 1024 * 1024);
  const overlay = join(dir, 'overlay.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay);
  const server = await serveFiles({ '/overlay.qcow2': overlay });
  try {
    await assert.rejects(openImage(server.url('/overlay.qcow2')), {
      code: 'UNTRUSTED_REFERENCE',
    });
  } finally {
    await server.close();
  }
});

test('http: a qcow2 image over ranges equals qemu-img convert', async () => {
  const path = join(dir, 'disk.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '8M');
  await qemuIo(path, ['write -P 0x55 0 64k', 'write -P 0xaa 3M 1M', 'write -z 5M 64k'], 'qcow2');
  const expected = join(dir, 'disk.qcow2.raw');
  await qemuImg('convert', '-O', 'raw', path, expected);
  const server = await serveFiles({ '/disk.qcow2': path });
  try {
    const image = await openImage(server.url('/disk.qcow2'));
    try {
      assert.equal(image.format, 'qcow2');
      assert.deepEqual(await readAll(image), readFileSync(expected));
    } finally {
      await image.close();
    }
  } finally {
    await server.close();
  }
});

test('http: a server without Range support gets a clear error', async () => {
  const server = await serveFiles({ '/disk.raw': raw }, { ranges: false });
  try {
    await assert.rejects(openImage(server.url('/disk.raw'), { http: QUICK }), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'HTTP');
      assert.match(err.message, /server does not support range requests; use 'diskpipe pull'/);
      return true;
    });
    // Only one request: a missing feature is not retried.
    assert.equal(server.log.length, 1);
  } finally {
    await server.close();
  }
});

test('http: a small file from a server without Range support still opens', async () => {
  const small = makeRaw('small.raw', 10_000);
  const server = await serveFiles({ '/small.raw': small }, { ranges: false });
  try {
    const image = await openImage(server.url('/small.raw'));
    assert.deepEqual(await readAll(image), readFileSync(small));
    await image.close();
  } finally {
    await server.close();
  }
});

test('http: 500 is retried, then reported; 404 is reported at once', async () => {
  const server = await serveFiles({ '/disk.raw': raw }, { fail: () => 500 });
  try {
    await assert.rejects(openImage(server.url('/disk.raw'), { http: QUICK }), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'HTTP');
      assert.match(err.message, /HTTP 500 Internal Server Error \(after 2 retries\)/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.equal(server.log.length, 3);
    server.log.length = 0;
    await assert.rejects(openImage(server.url('/missing.raw'), { http: QUICK }), {
      code: 'HTTP',
      message: /HTTP 404 Not Found/,
    });
    assert.equal(server.log.length, 1);
  } finally {
    await server.close();
  }
});

test('http: a transient 503 is retried and the read succeeds', async () => {
  const server = await serveFiles(
    { '/disk.raw': raw },
    { fail: (n) => (n <= 2 ? 503 : undefined) },
  );
  try {
    const image = await openImage(server.url('/disk.raw'), { http: QUICK });
    assert.deepEqual(await readAll(image), readFileSync(raw));
    await image.close();
  } finally {
    await server.close();
  }
});

test('http: a connection dropped half-way is retried; dropped every time is an error', async () => {
  const once = await serveFiles(
    { '/disk.raw': raw },
    { drop: (n) => (n <= 3 ? 10_000 : undefined) },
  );
  try {
    const image = await openImage(once.url('/disk.raw'), { http: { ...QUICK, retries: 4 } });
    assert.deepEqual(await readAll(image), readFileSync(raw));
    await image.close();
  } finally {
    await once.close();
  }
  const always = await serveFiles({ '/disk.raw': raw }, { drop: () => 10_000 });
  try {
    await assert.rejects(openImage(always.url('/disk.raw'), { http: QUICK }), {
      code: 'HTTP',
      message: /connection closed after 10000 of 262144 bytes \(after 2 retries\)/,
    });
  } finally {
    await always.close();
  }
});

test('http: a failure after opening is an error of the read that needed it', async () => {
  const server = await serveFiles({ '/disk.raw': raw }, { fail: (n) => (n > 1 ? 502 : undefined) });
  try {
    const source = await HttpSource.open(server.url('/disk.raw'), { ...QUICK, blockSize: 65536 });
    const first = new Uint8Array(1000);
    assert.equal(await source.read(first, 0), 1000);
    assert.deepEqual(Buffer.from(first), readFileSync(raw).subarray(0, 1000));
    await assert.rejects(source.read(new Uint8Array(10), 2_000_000), {
      code: 'HTTP',
      message: /HTTP 502 Bad Gateway \(after 2 retries\)/,
    });
    await source.close();
  } finally {
    await server.close();
  }
});

test('http: a server that never answers times out', async () => {
  const server = await serveFiles({ '/disk.raw': raw }, { stall: true });
  try {
    await assert.rejects(
      openImage(server.url('/disk.raw'), { http: { retries: 0, timeoutMs: 300 } }),
      { code: 'HTTP', message: /no response in 300 ms/ },
    );
  } finally {
    await server.close();
  }
});

test('http: redirects are followed; later ranges go to the final URL', async () => {
  const server = await serveFiles({ '/real.raw': raw }, { redirects: { '/old.raw': '/real.raw' } });
  try {
    const source = await HttpSource.open(server.url('/old.raw'), { blockSize: 64 * 1024 });
    assert.equal(source.size, 3 * 1024 * 1024 + 777);
    assert.equal(source.name, server.url('/real.raw'));
    const buf = new Uint8Array(5000);
    await source.read(buf, 1_234_567);
    assert.deepEqual(Buffer.from(buf), readFileSync(raw).subarray(1_234_567, 1_239_567));
    await source.close();
    assert.deepEqual(
      server.log.map((r) => r.path),
      ['/old.raw', '/real.raw', '/real.raw'],
    );
  } finally {
    await server.close();
  }
});

test('http: sequential reads are merged into few larger requests (readahead)', async () => {
  const server = await serveFiles({ '/disk.raw': raw });
  try {
    const source = await HttpSource.open(server.url('/disk.raw'), {
      blockSize: 16 * 1024,
      maxReadahead: 1024 * 1024,
      maxRequestBytes: 512 * 1024,
    });
    const data = readFileSync(raw);
    const buf = new Uint8Array(16 * 1024);
    for (let at = 0; at < source.size; at += buf.length) {
      const n = await source.read(buf, at);
      assert.deepEqual(Buffer.from(buf.subarray(0, n)), data.subarray(at, at + n));
    }
    await source.close();
    const blocks = Math.ceil(source.size / (16 * 1024));
    assert.ok(server.log.length < blocks / 4, `${server.log.length} requests for ${blocks} blocks`);
  } finally {
    await server.close();
  }
});

test('http: a resource that changes on the server while read is an error', async () => {
  const server = await serveFiles(
    { '/disk.raw': raw },
    { etag: (n) => (n <= 1 ? '"v1"' : '"v2"') },
  );
  try {
    const source = await HttpSource.open(server.url('/disk.raw'), { ...QUICK, blockSize: 65536 });
    await assert.rejects(source.read(new Uint8Array(10), 2_000_000), {
      code: 'HTTP',
      message: /changed on the server/,
    });
    await source.close();
  } finally {
    await server.close();
  }
});

test('http: HTTP images cannot be opened for writing', async () => {
  const server = await serveFiles({ '/disk.raw': raw });
  try {
    await assert.rejects(openImage(server.url('/disk.raw'), { writable: true }), {
      code: 'NOT_CAPABLE',
    });
  } finally {
    await server.close();
  }
});

test('http: a compressed image over HTTP is decompressed as one stream', async () => {
  const xz = join(dir, 'net.raw');
  writeFileSync(xz, readFileSync(raw));
  await run('xz', ['-T1', '-1', '-f', xz]);
  const server = await serveFiles({ '/net.raw.xz': `${xz}.xz` });
  try {
    const opened = await openStream(server.url('/net.raw.xz'), { accelerate: false });
    assert.equal(opened.kind, 'stream');
    if (opened.kind !== 'stream') return;
    assert.equal(opened.stream.untrusted, true);
    const parts: Buffer[] = [];
    for await (const c of opened.stream.chunks()) parts.push(Buffer.from(c));
    await opened.stream.close();
    assert.ok(Buffer.concat(parts).equals(readFileSync(raw)));
  } finally {
    await server.close();
  }
});
