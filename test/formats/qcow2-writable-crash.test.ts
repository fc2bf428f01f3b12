/**
 * Crash consistency of the in-place qcow2 writer, deterministically: every file write and
 * fsync of a session is recorded; then, for every fsync, the file as a crash would leave it
 * (everything up to that fsync, and everything up to just before the next one) is rebuilt
 * and must pass `qemu-img check` with at worst leaks (exit 0 or 3, never 2). A writer that
 * wrote an L2 table before the refcounts of its clusters fails here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalFile } from '../../src/io/file.js';
import { openImage } from '../../src/open.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

type Step = { offset: number; data: Buffer } | 'sync';

/** Records LocalFile writes and syncs on `path` while `fn` runs. */
async function record(path: string, fn: () => Promise<void>): Promise<Step[]> {
  const steps: Step[] = [];
  const proto = LocalFile.prototype;
  const write = proto.write;
  const sync = proto.sync;
  proto.write = function (this: LocalFile, buf: Uint8Array, offset: number) {
    if (this.path === path) steps.push({ offset, data: Buffer.from(buf) });
    return write.call(this, buf, offset);
  };
  proto.sync = function (this: LocalFile) {
    if (this.path === path) steps.push('sync');
    return sync.call(this);
  };
  try {
    await fn();
  } finally {
    proto.write = write;
    proto.sync = sync;
  }
  return steps;
}

function rebuild(start: Buffer, steps: Step[], count: number): Buffer {
  let file = Buffer.from(start);
  for (const s of steps.slice(0, count)) {
    if (s === 'sync') continue;
    const end = s.offset + s.data.length;
    if (end > file.length) file = Buffer.concat([file, Buffer.alloc(end - file.length)]);
    s.data.copy(file, s.offset);
  }
  return file;
}

const CASES: [string, string][] = [
  ['v3', 'cluster_size=4096'],
  // 512-byte clusters and 1-bit refcounts: new refcount blocks and a refcount table that moves.
  ['small', 'cluster_size=512,refcount_bits=1'],
];

for (const [name, opts] of CASES) {
  test(`a crash at any fsync leaves qemu-img check clean or leaking (${name})`, async () => {
    const path = join(dir, `${name}.qcow2`);
    await qemuImg('create', '-f', 'qcow2', '-o', opts, path, '64M');
    await qemuIo(path, ['write -P 1 0 256k', 'write -c -P 2 1M 64k']);
    const start = readFileSync(path);
    const steps = await record(path, async () => {
      const image = await openImage(path, { writable: true });
      await image.write!(Buffer.alloc(300 * 1024, 3), 2 * 1024 * 1024 + 512);
      await image.write!(Buffer.alloc(4096, 4), 1024 * 1024 + 100); // into the compressed data
      await image.zero!(0, 64 * 1024);
      await image.write!(Buffer.alloc(1024 * 1024, 5), 40 * 1024 * 1024);
      await image.flush!();
      await image.write!(Buffer.alloc(8192, 6), 20 * 1024 * 1024);
      await image.close();
    });
    const syncs = steps.flatMap((s, i) => (s === 'sync' ? [i] : []));
    assert.ok(syncs.length >= 8, `only ${syncs.length} fsyncs`);
    // Cut right after each fsync, and right before it (all writes since the previous one).
    const cuts = new Set<number>();
    for (const i of syncs) cuts.add(i).add(i + 1);
    for (const cut of [...cuts].sort((a, b) => a - b)) {
      const crashed = join(dir, `${name}-crash.qcow2`);
      writeFileSync(crashed, rebuild(start, steps, cut));
      const r = spawnSync('qemu-img', ['check', crashed], { encoding: 'utf8' });
      assert.ok(r.status === 0 || r.status === 3, `cut at step ${cut}: ${r.stdout}${r.stderr}`);
    }
    const r = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout);
  });
}
