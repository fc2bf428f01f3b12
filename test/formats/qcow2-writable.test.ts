/**
 * qcow2 written in place (`serve --writable`): the same random writes, zero writes and discards
 * sent through NBD and applied by qemu-io directly to a copy must give identical guest content
 * and a clean `qemu-img check`; a kill -9 mid-write leaves at worst leaks, never corruption,
 * and every write acknowledged before an acknowledged flush is there.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client/connection.js';
import { parseNbdUri } from '../../src/nbd/uri.js';
import { diskpipe, qemuImg, qemuIo, run, tempDir } from '../helpers/peers.js';
import { exitOf, startServe } from '../nbd/helpers.js';

const dir = tempDir();
const MiB = 1024 * 1024;

/** A small deterministic PRNG (tests must not depend on Math.random). */
function prng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

/** qemu-io commands: overlapping writes of 512 B–4 MiB, zero writes, discards, then a flush. */
function randomOps(seed: number, size: number, count: number): string[] {
  const r = prng(seed);
  const ops: string[] = [];
  for (let i = 0; i < count; i++) {
    const kind = r(10);
    const len = kind < 7 ? 512 * (1 + r(r(4) === 0 ? 8192 : 64)) : 512 * (1 + r(4096));
    const off = Math.min(512 * r(size / 512), size - len);
    if (kind < 6) ops.push(`write -P ${1 + r(254)} ${off} ${len}`);
    else if (kind < 8) ops.push(`write -z ${off} ${len}`);
    else ops.push(`discard ${off} ${len}`);
  }
  ops.push('flush');
  return ops;
}

/** `qemu-img check`'s exit status (0 clean, 2 corrupt, 3 leaks). */
function checkStatus(path: string): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** Serves `path` writable on a Unix socket, runs qemu-io `ops` through NBD, stops the server. */
async function writeThroughNbd(path: string, ops: string[]): Promise<void> {
  const socket = join(dir, `s-${Math.random().toString(36).slice(2)}`);
  const server = await startServe(['--writable', '--socket', socket, path]);
  try {
    await qemuIo(`nbd+unix:///?socket=${socket}`, ops, 'raw');
  } finally {
    assert.equal(await server.stop(), 143, server.stderr());
  }
}

/** Prepares an image with data, compressed clusters and zero clusters, plus a copy for qemu. */
async function prepare(name: string, opts: string, size: string, backing?: string) {
  const path = join(dir, `${name}.qcow2`);
  const args = ['create', '-f', 'qcow2', '-o', opts];
  if (backing) args.push('-b', backing, '-F', 'qcow2');
  await qemuImg(...args, path, size);
  await qemuIo(path, ['write -P 0x11 0 3M', 'write -c -P 0x22 4M 128k', 'write -P 0x33 9M 1M']);
  if (opts.includes('compat=1.1') || !opts.includes('compat')) {
    await qemuIo(path, ['write -z 9M 512k']);
  }
  const copy = join(dir, `${name}-qemu.qcow2`);
  copyFileSync(path, copy);
  return { path, copy };
}

const VARIANTS: [string, string][] = [
  ['v3', 'compat=1.1'],
  ['v2', 'compat=0.10'],
  ['zstd', 'compression_type=zstd'],
  // 512-byte clusters with 1-bit refcounts: many refcount blocks and a growing refcount table.
  ['small', 'cluster_size=512,refcount_bits=1'],
  ['rc64', 'cluster_size=4096,refcount_bits=64'],
];

for (const [name, opts] of VARIANTS) {
  test(`serve --writable qcow2 (${name}): random NBD writes equal qemu-io's, check clean`, async () => {
    const { path, copy } = await prepare(name, opts, '64M');
    const ops = randomOps(name.length * 7919 + 1, 64 * MiB, 60);
    await writeThroughNbd(path, ops);
    await qemuIo(copy, ops);
    const check = checkStatus(path);
    assert.equal(check.status, 0, check.out);
    await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', path, copy);
  });
}

test('serve --writable qcow2: nbdcopy writes a whole disk into it', async () => {
  const { path } = await prepare('nbdcopy', 'compat=1.1', '32M');
  const raw = join(dir, 'nbdcopy-src.raw');
  await qemuImg('create', '-f', 'raw', raw, '32M');
  await qemuIo(
    raw,
    ['write -P 0x5a 1M 5M', 'write -P 0x5b 20M 64k', 'write -P 0x5c 31M 1M'],
    'raw',
  );
  const socket = join(dir, 'nbdcopy.sock');
  const server = await startServe(['--writable', '--socket', socket, path]);
  try {
    await run('nbdcopy', ['--flush', raw, `nbd+unix:///?socket=${socket}`]);
  } finally {
    assert.equal(await server.stop(), 143, server.stderr());
  }
  assert.equal(checkStatus(path).status, 0);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', path, raw);
});

test('serve --writable qcow2 overlay: writes go to the top layer only', async () => {
  const base = join(dir, 'chain-base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '64M');
  await qemuIo(base, ['write -P 0x44 0 8M', 'write -c -P 0x45 16M 1M', 'write -P 0x46 40M 2M']);
  const before = readFileSync(base);
  const { path, copy } = await prepare('chain', 'compat=1.1', '64M', 'chain-base.qcow2');
  const ops = randomOps(4242, 64 * MiB, 60);
  await writeThroughNbd(path, ops);
  await qemuIo(copy, ops);
  assert.ok(readFileSync(base).equals(before), 'the backing file was modified');
  assert.equal(checkStatus(path).status, 0);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', path, copy);
  // Unwritten ranges still read through to the backing file.
  const map = JSON.parse(await qemuImg('map', '--output=json', path)) as { depth: number }[];
  assert.ok(map.some((e) => e.depth === 1));
});

test('serve --writable refuses qcow2 images it cannot write safely', async () => {
  const cases: [string, (p: string) => Promise<void>, RegExp][] = [
    [
      'corrupt',
      async (p) => {
        await qemuImg('create', '-f', 'qcow2', p, '1M');
        const b = readFileSync(p);
        b[79] = b[79]! | 2; // incompatible_features bit 1: corrupt
        writeFileSync(p, b);
      },
      /marked corrupt/,
    ],
    [
      'dirty',
      async (p) => {
        await qemuImg('create', '-f', 'qcow2', '-o', 'lazy_refcounts=on', p, '1M');
        const b = readFileSync(p);
        b[79] = b[79]! | 1;
        writeFileSync(p, b);
      },
      /dirty bit/,
    ],
    [
      'extl2',
      (p) => qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on', p, '1M').then(() => {}),
      /extended L2/,
    ],
    [
      'snap',
      async (p) => {
        await qemuImg('create', '-f', 'qcow2', p, '1M');
        await qemuImg('snapshot', '-c', 's1', p);
      },
      /internal snapshot/,
    ],
  ];
  for (const [name, make, message] of cases) {
    const p = join(dir, `refuse-${name}.qcow2`);
    await make(p);
    const before = readFileSync(p);
    const r = diskpipe(['serve', '--writable', '--socket', join(dir, `${name}.sock`), p]);
    assert.equal(r.status, 2, `${name}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.ok(readFileSync(p).equals(before), `${name}: the image was modified`);
  }
});

test('kill -9 mid-write: leaks at most, and every flushed write is there', async () => {
  const path = join(dir, 'crash.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '256M');
  await qemuIo(path, ['write -P 0x77 0 1M', 'write -c -P 0x78 2M 64k']);
  const socket = join(dir, 'crash.sock');
  const server = await startServe(['--writable', '--socket', socket, path]);
  const client = await NbdClient.connect(parseNbdUri(`nbd+unix:///?socket=${socket}`), {});
  const r = prng(99);
  /** Writes acknowledged before the newest acknowledged flush was sent: these must survive. */
  let durable: { off: number; data: Buffer }[] = [];
  const acked: { off: number; data: Buffer }[] = [];
  const KILL_AFTER = 150;
  let killed = false;
  const inflight = new Set<Promise<void>>();
  for (let i = 0; !killed; i++) {
    // Each write gets its own 1 MiB region (so later writes never overwrite a checked one),
    // some landing in the compressed cluster's region and partial clusters.
    const len = 512 * (1 + r(300));
    const off = Math.min(i * MiB + 512 * r(1024), 256 * MiB - len);
    const data = Buffer.alloc(len, 1 + (i % 250));
    const p = client.pwrite(data, off).then(() => {
      acked.push({ off, data });
      if (acked.length >= KILL_AFTER && !killed) {
        killed = true;
        server.proc.kill('SIGKILL');
      }
    });
    track(p);
    if (i % 2 === 1) {
      const snapshot = acked.slice();
      track(
        client.flush().then(() => {
          if (!killed && snapshot.length > durable.length) durable = snapshot;
        }),
      );
    }
    while (inflight.size >= 8) await Promise.race(inflight);
    if (i >= 255) break;
  }
  await Promise.allSettled([...inflight]);
  await exitOf(server);
  await client.close().catch(() => {});
  assert.ok(killed, 'the server was not killed');
  assert.ok(durable.length >= 50, `only ${durable.length} flushed writes`);

  const check = checkStatus(path);
  assert.ok(check.status === 0 || check.status === 3, `qemu-img check: ${check.out}`);
  const raw = join(dir, 'crash.raw');
  await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', path, raw);
  const disk = readFileSync(raw);
  for (const w of durable) {
    assert.ok(disk.subarray(w.off, w.off + w.data.length).equals(w.data), `write at ${w.off} lost`);
  }

  function track(p: Promise<void>): void {
    const q = p.catch(() => {}).finally(() => inflight.delete(q));
    inflight.add(q);
  }
});

test('SIGTERM: serve --writable qcow2 writes its metadata out before exiting', async () => {
  const path = join(dir, 'term.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '16M');
  const socket = join(dir, 'term.sock');
  const server = await startServe(['--writable', '--socket', socket, path]);
  const client = await NbdClient.connect(parseNbdUri(`nbd+unix:///?socket=${socket}`), {});
  // Acknowledged, never flushed: only the signal's close can write the new L2 entries.
  await client.pwrite(Buffer.alloc(3 * MiB, 0x61), MiB);
  await client.pwrite(Buffer.alloc(4096, 0x62), 10 * MiB + 512);
  assert.equal(await server.stop(), 143, server.stderr());
  await client.close().catch(() => {});
  assert.equal(checkStatus(path).status, 0);
  const expected = join(dir, 'term-expected.qcow2');
  await qemuImg('create', '-f', 'qcow2', expected, '16M');
  await qemuIo(expected, ['write -P 0x61 1M 3M', 'write -P 0x62 10486272 4096']);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'qcow2', path, expected);
});

test('convert -n into an existing qcow2 writes it in place through the writer', async () => {
  const { path } = await prepare('convert-n', 'compat=1.1', '32M');
  const raw = join(dir, 'convert-n-src.raw');
  await qemuImg('create', '-f', 'raw', raw, '32M');
  await qemuIo(
    raw,
    ['write -P 0x71 0 2M', 'write -P 0x72 4198400 8192', 'write -P 0x73 30M 2M'],
    'raw',
  );
  const r = diskpipe(['convert', '-n', '-O', 'qcow2', raw, path]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(checkStatus(path).status, 0);
  await qemuImg('compare', '-f', 'qcow2', '-F', 'raw', path, raw);
});

test('no space left: failed writes leave no leaked clusters (as qemu-nbd)', async (t) => {
  // A 4 MiB tmpfs (tests run as root in CI) holding a qcow2 with 1 MiB of data.
  const mnt = join(dir, 'full-fs');
  mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  assert.equal(m.status, 0, `mount tmpfs: ${m.stderr}`);
  t.after(() => spawnSync('umount', [mnt]));
  const path = join(mnt, 'full.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '64M');
  await qemuIo(path, ['write -P 0x11 0 1M']);
  const socket = join(dir, 'full.sock');
  const server = await startServe(['--writable', '--socket', socket, path]);
  const client = await NbdClient.connect(parseNbdUri(`nbd+unix:///?socket=${socket}`), {});
  const partial: number[] = [];
  try {
    // Partial clusters, each in a new cluster, until the disk is full...
    for (let i = 0; ; i++) {
      assert.ok(i < 64, 'the filesystem never filled up');
      const off = 16 * MiB + i * 65536 + 512;
      const ok = await client.pwrite(Buffer.alloc(4096, 0x23), off).then(
        () => true,
        () => false,
      );
      if (!ok) break;
      partial.push(off);
    }
    // ...then whole new clusters, which cannot fit either.
    await assert.rejects(client.pwrite(Buffer.alloc(8 * MiB, 0x22), 32 * MiB));
    // A cluster the image already has still takes writes.
    await client.pwrite(Buffer.alloc(65536, 0x24), 0);
    await client.flush();
  } finally {
    assert.equal(await server.stop(), 143, server.stderr());
    await client.close().catch(() => {});
  }
  const check = checkStatus(path);
  assert.equal(check.status, 0, check.out);
  assert.ok(partial.length > 0);
  await qemuIo(path, [
    'read -P 0x24 0 64k',
    'read -P 0x11 64k 960k',
    ...partial.map((off) => `read -P 0x23 ${off} 4096`),
    'read -P 0 32M 8M',
  ]);
});

test('a crafted L2 entry pointing at the refcount table: the write is refused, the tables kept (as qemu-nbd)', async () => {
  const path = join(dir, 'onto-metadata.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '64M');
  await qemuIo(path, ['write -P 1 0 64k']);
  // Guest cluster 0's entry (COPIED) now names the refcount table's cluster.
  const bytes = readFileSync(path);
  const refTable = bytes.readBigUInt64BE(48);
  const l2 = Number(bytes.readBigUInt64BE(Number(bytes.readBigUInt64BE(40))) & 0xfffffffffe00n);
  bytes.writeBigUInt64BE((1n << 63n) | refTable, l2);
  writeFileSync(path, bytes);
  const socket = join(dir, 'onto-metadata.sock');
  const server = await startServe(['--writable', '--socket', socket, path]);
  const client = await NbdClient.connect(parseNbdUri(`nbd+unix:///?socket=${socket}`), {});
  try {
    // Before: acknowledged, and the refcount table held the guest's bytes.
    await assert.rejects(client.pwrite(Buffer.alloc(65536, 0x55), 0));
    await assert.rejects(client.pwrite(Buffer.alloc(512, 0x56), 4096));
  } finally {
    assert.equal(await server.stop(), 143, server.stderr());
    await client.close().catch(() => {});
  }
  assert.deepEqual(readFileSync(path), bytes);
});

/** Serves `path` writable, runs `writes` through NBD, stops the server (which flushes). */
async function servedWrites(
  path: string,
  writes: (client: NbdClient) => Promise<void>,
): Promise<void> {
  const socket = `${path}.sock`;
  const server = await startServe(['--writable', '--socket', socket, path]);
  const client = await NbdClient.connect(parseNbdUri(`nbd+unix:///?socket=${socket}`), {});
  try {
    await writes(client);
  } finally {
    assert.equal(await server.stop(), 143, server.stderr());
    await client.close().catch(() => {});
  }
}

// The metadata known at open is not all of it: a refcount block allocated while serving lands
// at the end of the file, where a crafted entry (past the end at open) may already point.
test('a crafted L2 entry pointing where a new refcount block is later allocated: the write is refused, the block kept', async () => {
  const base = join(dir, 'late-block-base.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=512', base, '1M');
  await qemuIo(base, ['write -P 1 0 512']);
  // 512-byte clusters, 16-bit refcounts: a refcount block covers 128 KiB of the file, so
  // 256 KiB of new data needs new blocks. A first run finds where block 1 lands.
  const grow = (client: NbdClient) => client.pwrite(Buffer.alloc(256 * 1024, 0x77), 256 * 1024);
  const probe = join(dir, 'late-block-probe.qcow2');
  copyFileSync(base, probe);
  await servedWrites(probe, grow);
  const probed = readFileSync(probe);
  const block1 = Number(probed.readBigUInt64BE(Number(probed.readBigUInt64BE(48)) + 8));
  assert.ok(block1 > readFileSync(base).length, 'block 1 is allocated past the old end');
  // Guest cluster 1's entry (COPIED) names that cluster, past the end of the file for now.
  const path = join(dir, 'late-block.qcow2');
  const bytes = readFileSync(base);
  const l2 = Number(bytes.readBigUInt64BE(Number(bytes.readBigUInt64BE(40))) & 0xfffffffffe00n);
  bytes.writeBigUInt64BE((1n << 63n) | BigInt(block1), l2 + 8);
  writeFileSync(path, bytes);
  await servedWrites(path, async (client) => {
    await grow(client);
    // Before: acknowledged, and refcount block 1 held the guest's bytes.
    await assert.rejects(client.pwrite(Buffer.alloc(512, 0x55), 512));
  });
  const after = readFileSync(path);
  assert.deepEqual(after.subarray(block1, block1 + 512), probed.subarray(block1, block1 + 512));
});
