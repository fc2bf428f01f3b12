/**
 * `check` of a wrapped image checks the image inside (a tar/OVA member, a .xz/.gz/.zst/.bz2
 * file), as every other command reads it: the output and exit status are qemu-img check's
 * for the inner file. It used to probe the wrapper as raw ("raw images have no check", 63).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

function wrap(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [suffix, cmd] of [
    ['xz', ['xz', '-0', '-T1', '-c']],
    ['gz', ['gzip', '-c']],
    ['zst', ['zstd', '-q', '-c']],
    ['bz2', ['bzip2', '-c']],
  ] as const) {
    const file = `${path}.${suffix}`;
    writeFileSync(file, execFileSync(cmd[0], [...cmd.slice(1), path], { maxBuffer: 1 << 28 }));
    out[suffix] = file;
  }
  const tar = join(dir, `${path.split('/').pop()}.tar`);
  execFileSync('tar', ['-cf', tar, '-C', dir, path.split('/').pop()!]);
  out.tar = tar;
  const tarXz = `${tar}.xz`;
  writeFileSync(tarXz, execFileSync('xz', ['-0', '-T1', '-c', tar]));
  out['tar.xz'] = tarXz;
  return out;
}

/** diskpipe check of `wrapped` prints and exits what qemu-img check of `inner` does. */
function sameAsQemuInside(inner: string, wrapped: string): number {
  for (const json of [[], ['--output=json']]) {
    const peer = spawnSync('qemu-img', ['check', ...json, inner], { encoding: 'utf8' });
    const r = diskpipe(['check', ...json, wrapped]);
    assert.equal(r.status, peer.status, `${wrapped}: ${r.stderr}`);
    if (json.length > 0) {
      const ours = JSON.parse(r.stdout);
      const theirs = JSON.parse(peer.stdout);
      assert.equal(ours.filename, wrapped);
      ours.filename = theirs.filename;
      assert.deepEqual(ours, theirs, wrapped);
    } else assert.equal(r.stdout, peer.stdout, wrapped);
  }
  return spawnSync('qemu-img', ['check', inner]).status!;
}

test('check of a qcow2 inside tar, .xz, .gz, .zst, .bz2 and .tar.xz checks the qcow2', async () => {
  const clean = join(dir, 'clean.qcow2');
  await qemuImg('create', '-f', 'qcow2', clean, '8M');
  await qemuIo(clean, ['write -P 1 0 1M', 'write -c -P 2 2M 64k', 'write -z 3M 64k']);
  for (const [how, file] of Object.entries(wrap(clean))) {
    assert.equal(sameAsQemuInside(clean, file), 0, how);
  }

  // A leaked cluster (exit 3): the second data cluster's L2 entry cleared.
  const leak = join(dir, 'leak.qcow2');
  await qemuImg('create', '-f', 'qcow2', leak, '10M');
  await qemuIo(leak, ['write -P 1 0 128k']);
  const fd = openSync(leak, 'r+');
  const u64 = (at: number) => {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, at);
    return Number(b.readBigUInt64BE(0) & 0x00fffffffffffe00n);
  };
  const l2 = u64(u64(40));
  writeSync(fd, Buffer.alloc(8), 0, 8, l2 + 8);
  closeSync(fd);
  for (const [how, file] of Object.entries(wrap(leak))) {
    assert.equal(sameAsQemuInside(leak, file), 3, how);
  }
});

test('check of raw inside .xz still has no check (63); -f turns unwrapping off', async () => {
  const raw = sparseFile(join(dir, 'disk.raw'), 1 << 20);
  const { xz } = wrap(raw);
  const r = diskpipe(['check', xz!]);
  assert.equal(r.status, 63);
  assert.match(r.stderr, /^diskpipe: raw images have no check/);
  const qcow = join(dir, 'forced.qcow2');
  await qemuImg('create', '-f', 'qcow2', qcow, '1M');
  const forced = diskpipe(['check', '-f', 'qcow2', wrap(qcow).xz!]);
  assert.equal(forced.status, 1, forced.stderr);
  assert.match(forced.stderr, /not a qcow2 image/);
  // --member picks the tar member to check, as for info.
  const tar = join(dir, 'two.tar');
  execFileSync('tar', ['-cf', tar, '-C', dir, 'disk.raw', 'forced.qcow2']);
  const member = diskpipe(['check', '--member', 'forced.qcow2', tar]);
  assert.equal(member.status, 0, member.stderr);
  assert.match(member.stdout, /^No errors were found on the image\./);
});
