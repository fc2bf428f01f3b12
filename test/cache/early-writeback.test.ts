import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EarlyWriteback } from '../../src/cache/early-writeback.js';
import type { LocalFile } from '../../src/io/file.js';

const MiB = 1024 * 1024;

/** A file whose syncs finish when the test says so. */
function fakeFile(fail = false) {
  const state = { syncs: 0, running: 0, maxRunning: 0, release: [] as (() => void)[] };
  const file = {
    sync: async () => {
      state.syncs++;
      state.maxRunning = Math.max(state.maxRunning, ++state.running);
      await new Promise<void>((r) => state.release.push(r));
      state.running--;
      if (fail) throw new Error('EIO on purpose');
    },
  } as unknown as LocalFile;
  return { file, state };
}

test('early writeback: one background sync per `every` bytes, never two at once', async () => {
  const { file, state } = fakeFile();
  const wb = new EarlyWriteback(file, 4 * MiB);
  for (let i = 0; i < 3; i++) wb.wrote(MiB);
  assert.equal(state.syncs, 0, 'not before 4 MiB');
  wb.wrote(MiB);
  assert.equal(state.syncs, 1);
  for (let i = 0; i < 8; i++) wb.wrote(MiB); // while the first sync runs: none more
  assert.equal(state.syncs, 1);
  for (const r of state.release.splice(0)) r();
  await new Promise((r) => setImmediate(r));
  wb.wrote(4 * MiB);
  assert.equal(state.syncs, 2);
  const done = wb.finish();
  for (const r of state.release.splice(0)) r();
  await done;
  assert.equal(state.maxRunning, 1);
});

test('early writeback: a failed background sync fails finish()', async () => {
  const { file, state } = fakeFile(true);
  const wb = new EarlyWriteback(file, MiB);
  wb.wrote(MiB);
  const done = wb.finish();
  for (const r of state.release.splice(0)) r();
  await assert.rejects(done, /EIO on purpose/);
});
