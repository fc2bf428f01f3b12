/**
 * Focused regression tests for the bugs the format fuzzer found (test/fuzz/formats.fuzz.ts),
 * each named after what it guards, on images made by qemu-img and edited by hand.
 */
import assert from 'node:assert/strict';
import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import { closeDecodePool, decodeBatch, Flavour } from '../../src/codec/engine.js';
import { checksumWithField } from '../../src/formats/vhdx/crc32c.js';
import type { Image, MapEntry } from '../../src/image/types.js';
import { openImage } from '../../src/open.js';
import { mixedRaw } from '../formats/vmdk-vdi-peer.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = join(tempDir('diskpipe-fuzz-regress-'), 'images');
mkdirSync(dir);
const src = await mixedRaw(dir, 'src.raw', 4 * 1024 * 1024 + 1536);

async function convert(format: string, name: string, options: string[] = []): Promise<string> {
  const path = join(dir, name);
  await qemuImg('convert', '-f', 'raw', '-O', format, ...options, src, path);
  return path;
}

async function collect(image: Image, offset: number, length: number): Promise<MapEntry[]> {
  const out: MapEntry[] = [];
  for await (const e of image.mapping!(offset, length)) out.push(e);
  return out;
}

test('vmdk mapping() of an unaligned range stays inside the range', async () => {
  // A grain-sized run reported whole made a delta's parent map overlap the child's entries.
  const image = await openImage(await convert('vmdk', 'clip.vmdk'));
  try {
    const whole = await collect(image, 0, image.size);
    const first = whole[0]!;
    assert.ok(first.data && first.hostOffset !== undefined && first.length >= 65536);
    const part = await collect(image, 1000, 5000);
    assert.deepEqual(part, [
      { ...first, offset: 1000, length: 5000, hostOffset: first.hostOffset + 1000 },
    ]);
  } finally {
    await image.close();
  }
});

test('vhdx log search stays linear in the number of log entries', async () => {
  // 8192 chained entries filling a 32 MiB log: every start position used to re-walk its chain
  // with a linear loop check (cubic: minutes); each entry is now walked once.
  const path = join(dir, 'long-log.vhdx');
  await qemuImg('create', '-f', 'vhdx', '-o', 'log_size=32M,block_size=1M', path, '4M');
  const fd = openSync(path, 'r+');
  const guid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  let log = { offset: 0, length: 0 };
  for (const at of [64 * 1024, 128 * 1024]) {
    const h = Buffer.alloc(4096);
    readSync(fd, h, 0, 4096, at);
    guid.copy(h, 48);
    h.writeUInt32LE(checksumWithField(h, 4), 4);
    writeSync(fd, h, 0, 4096, at);
    log = { offset: Number(h.readBigUInt64LE(72)), length: h.readUInt32LE(68) };
  }
  assert.equal(log.length, 32 * 1024 * 1024);
  const entries = Buffer.alloc(log.length);
  for (let k = 0; k < log.length / 4096; k++) {
    const e = entries.subarray(k * 4096, (k + 1) * 4096);
    e.write('loge', 0, 'latin1');
    e.writeUInt32LE(4096, 8);
    e.writeBigUInt64LE(BigInt(k + 1), 16);
    guid.copy(e, 32);
    e.writeBigUInt64LE(BigInt(log.offset), 48); // flushed and last file offsets: inside the file
    e.writeBigUInt64LE(BigInt(log.offset), 56);
    e.writeUInt32LE(checksumWithField(e, 4), 4);
  }
  writeSync(fd, entries, 0, entries.length, log.offset);
  closeSync(fd);
  // No clock here: the cubic search took minutes on this image, which the runner reports as a
  // hang; the linear one opens it like any other test image.
  const image = await openImage(path);
  try {
    const replayed = (image.describe!().specific as Record<string, number>)['log-entries-replayed'];
    assert.equal(replayed, 8192);
  } finally {
    await image.close();
  }
});

test('vmdk extents of one descriptor share one grain directory budget', async () => {
  // One sparse file with a 16 MiB grain directory (a hole), listed again and again: each
  // listing used to read its own copy (64 GiB for the 4096 extents a descriptor may have).
  const extent = join(dir, 'big-gd-s001.vmdk');
  const h = Buffer.alloc(512);
  const sectors = 4 * 1024 * 1024;
  h.write('KDMV', 0, 'latin1');
  h.writeUInt32LE(1, 4); // version
  h.writeBigUInt64LE(BigInt(sectors), 12); // capacity
  h.writeBigUInt64LE(1n, 20); // grain: one sector
  h.writeUInt32LE(1, 44); // one entry per grain table: one directory entry per sector
  h.writeBigUInt64LE(1n, 56); // grain directory at sector 1
  h.writeBigUInt64LE(1n, 64); // overhead
  const fd = openSync(extent, 'w');
  writeSync(fd, h, 0, 512, 0);
  ftruncateSync(fd, 512 + sectors * 4);
  closeSync(fd);
  const descriptor = (n: number) => {
    const path = join(dir, `big-gd-${n}.vmdk`);
    const line = `RW ${sectors} SPARSE "big-gd-s001.vmdk"\n`;
    writeFileSync(
      path,
      `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\n${line.repeat(n)}`,
    );
    return path;
  };
  const one = await openImage(descriptor(1));
  assert.equal(one.size, sectors * 512);
  await one.close();
  await assert.rejects(openImage(descriptor(64)), {
    code: 'UNSUPPORTED',
    message: /grain directories hold more than 4194304 entries together/,
  });
});

test('error messages escape control characters read from images', async () => {
  // A backing file name with a newline (or a terminal escape) used to reach stderr raw.
  await convert('qed', 'ctl-base.qed');
  const path = join(dir, 'ctl.qed');
  await qemuImg('create', '-f', 'qed', '-b', 'ctl-base.qed', '-F', 'qed', path);
  const b = readFileSync(path);
  const at = b.indexOf('ctl-base.qed');
  b.write('\n\x1b[2J', at + 3, 'latin1');
  writeFileSync(path, b);
  await assert.rejects(openImage(path), (err: Error) => {
    assert.match(err.message, /backing file 'ctl\\x0a\\x1b\[2J\.qed' cannot be opened/);
    return true;
  });
  const r = diskpipe(['info', path]);
  assert.equal(r.status, 2);
  assert.match(
    r.stderr,
    /^diskpipe: backing file 'ctl\\x0a\\x1b\[2J\.qed' cannot be opened: ENOENT[^\n]*\n$/,
  );
});

/** Copies `from` to `name` with `edit` applied. */
function edited(from: string, name: string, edit: (b: Buffer) => void): string {
  const b = readFileSync(from);
  edit(b);
  const path = join(dir, name);
  writeFileSync(path, b);
  return path;
}

// One table or block behind many entries let a small file claim terabytes to walk (a 6 MiB
// VHD took over an hour to list its extents); such cross-links are refused at open.

test('vmdk grain directory entries sharing a grain table are refused', async () => {
  const good = join(dir, 'shared-gt.vmdk');
  await qemuImg('create', '-f', 'vmdk', good, '64M');
  const path = edited(good, 'shared-gt-bad.vmdk', (b) => {
    const gd = Number(b.readBigUInt64LE(56)) * 512;
    b.writeUInt32LE(b.readUInt32LE(gd), gd + 4);
  });
  (await openImage(good)).close();
  await assert.rejects(openImage(path), {
    code: 'CORRUPT',
    message: /two directory entries point at the grain table at sector \d+/,
  });
});

test('vhd BAT entries sharing a block are refused', async () => {
  const good = join(dir, 'shared-block.vhd');
  await qemuImg('create', '-f', 'vpc', good, '8M');
  await qemuIo(good, ['write -P 0x11 0 4k', 'write -P 0x22 2M 4k'], 'vpc');
  const bat = (b: Buffer) => Number(b.readBigUInt64BE(Number(b.readBigUInt64BE(16)) + 16));
  const same = edited(good, 'shared-block-bad.vhd', (b) => {
    b.writeUInt32BE(b.readUInt32BE(bat(b)), bat(b) + 4);
  });
  const overlap = edited(good, 'overlap-block-bad.vhd', (b) => {
    b.writeUInt32BE(b.readUInt32BE(bat(b)) + 8, bat(b) + 4);
  });
  (await openImage(good)).close();
  await assert.rejects(openImage(same), { code: 'CORRUPT', message: /two BAT entries point at/ });
  await assert.rejects(openImage(overlap), {
    code: 'CORRUPT',
    message: /blocks at sectors \d+ and \d+ overlap/,
  });
});

test('qed L1 entries sharing an L2 table are refused', async () => {
  const good = join(dir, 'shared-l2.qed');
  await qemuImg('create', '-f', 'qed', '-o', 'cluster_size=4096', good, '32M');
  await qemuIo(good, ['write -P 0x11 0 4k', 'write -P 0x22 8M 4k'], 'qed');
  const path = edited(good, 'shared-l2-bad.qed', (b) => {
    const l1 = Number(b.readBigUInt64LE(40));
    b.writeBigUInt64LE(b.readBigUInt64LE(l1), l1 + 8);
  });
  (await openImage(good)).close();
  await assert.rejects(openImage(path), {
    code: 'CORRUPT',
    message: /two L1 entries point at the L2 table at \d+/,
  });
});

test('error messages cut a quote of megabytes', async () => {
  // A descriptor line of a megabyte was quoted whole in "invalid extent line" (one huge stderr line).
  const path = join(dir, 'long-line.vmdk');
  const junk = 'x'.repeat(1000 * 1000);
  writeFileSync(
    path,
    `# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 8 FLAT "a" 0 ${junk}end\n`,
  );
  await assert.rejects(openImage(path), (err: Error) => {
    assert.ok(err.message.length < 2100, `${err.message.length} characters`);
    assert.match(
      err.message,
      /invalid extent line 'RW 8 FLAT "a" 0 x+\.\.\.\(\d+ characters\)\.\.\.x+end'$/,
    );
    return true;
  });
});

test('closing the decode pool while a worker loads its modules leaves no descriptor open', async () => {
  // vmdk-stream cases reported "1 file descriptor(s) left open" at random: closeDecodePool
  // terminated a worker while Node was still reading one of its module files, and Node never
  // closes that descriptor. Close the pool exactly while a codec module file is open.
  const codecDir = fileURLToPath(new URL('../../src/codec/', import.meta.url));
  const moduleFds = () =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(codecDir);
      } catch {
        return false; // closed meanwhile (or the directory's own descriptor)
      }
    });
  const cluster = 65536;
  const z = deflateRawSync(Buffer.alloc(cluster, 7));
  // Two clusters: more than is decoded inline, so the batch starts the worker pool.
  const items = [0, 1].map((i) => ({
    at: i * z.length,
    size: z.length,
    to: i * cluster,
    length: cluster,
    flavour: Flavour.Deflate,
  }));
  let caught = 0;
  for (let round = 0; round < 200 && caught < 3; round++) {
    let settled = false;
    const decoding = decodeBatch(Buffer.concat([z, z]), items, new Uint8Array(2 * cluster))
      .catch(() => undefined) // the batch may be cut off by the close: not what is tested
      .finally(() => {
        settled = true;
      });
    while (!settled && moduleFds().length === 0) await nextTurn();
    if (!settled) caught++;
    await closeDecodePool();
    await decoding;
  }
  assert.ok(caught > 0, 'no worker was seen loading its modules');
  assert.deepEqual(moduleFds(), []);
});
