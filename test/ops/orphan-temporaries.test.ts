/**
 * A run killed with -9 leaves its temporary output beside the destination; the next run for
 * the same destination removes it once its owner is gone, and never touches a live owner's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';

test('convert: temporaries of a dead run for the same DST are removed, a live one is kept', async () => {
  const dir = tempDir('diskpipe-orphans-');
  const src = join(dir, 'src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '4M');
  // A pid that has certainly exited: a child that ran and was waited for.
  const dead = spawnSync('true').pid!;
  const orphan = join(dir, `.out.raw.diskpipe-${dead}-0123abcd.tmp`);
  const live = join(dir, `.out.raw.diskpipe-${process.pid}-89abcdef.tmp`);
  const other = join(dir, `.other.raw.diskpipe-${dead}-0123abcd.tmp`);
  const unlike = join(dir, `.out.raw.diskpipe-${dead}-notours.tmp`);
  for (const f of [orphan, live, other, unlike]) writeFileSync(f, 'x');
  const r = diskpipe(['convert', '-O', 'raw', src, join(dir, 'out.raw')]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(orphan), false, 'the dead run’s temporary is removed');
  assert.equal(existsSync(live), true, 'a live owner’s temporary stays');
  assert.equal(existsSync(other), true, 'another destination’s temporary stays');
  assert.equal(existsSync(unlike), true, 'a name that is not ours stays');
});

test('disk create: the nested temporary a kill -9 during its sparse copy leaves is removed next time', async () => {
  const dir = tempDir('diskpipe-orphans-');
  const src = join(dir, 'src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '4M');
  const dead = spawnSync('true').pid!;
  // disk create's temporary for vm.raw, and the sparse copy's temporary for that one: what a
  // kill -9 midway left beside the VM's disk, as large as the copy had got, forever.
  const nested = join(dir, `..vm.raw.diskpipe-${dead}-0123abcd.tmp.diskpipe-${dead}-4567cdef.tmp`);
  const liveNested = join(
    dir,
    `..vm.raw.diskpipe-${process.pid}-0123abcd.tmp.diskpipe-${process.pid}-4567cdef.tmp`,
  );
  const otherNested = join(
    dir,
    `..other.raw.diskpipe-${dead}-0123abcd.tmp.diskpipe-${dead}-4567cdef.tmp`,
  );
  for (const f of [nested, liveNested, otherNested]) writeFileSync(f, 'x');
  const cache = join(dir, 'cache');
  const r = diskpipe(['--cache-dir', cache, 'disk', 'create', '--from', src, join(dir, 'vm.raw')]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(nested), false, 'the dead run’s nested temporary is removed');
  assert.equal(existsSync(liveNested), true, 'a live owner’s stays');
  assert.equal(existsSync(otherNested), true, 'another destination’s stays');
});
