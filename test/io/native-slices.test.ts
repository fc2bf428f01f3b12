/**
 * Native calls block the event loop while they run, so each covers at most MAX_CALL_BYTES and
 * the event loop gets a turn between two calls (clone used to copy 1 GiB per call).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalFile } from '../../src/io/file.js';
import { MAX_CALL_BYTES, nativeCallHook } from '../../src/io/native.js';
import { cloneFile } from '../../src/ops/clone.js';
import { sparseFile, tempDir } from '../helpers/peers.js';
import { writeRuns } from '../ops/util.js';

const dir = tempDir();
const MiB = 1024 * 1024;

interface Call {
  op: string;
  length: number;
  /** Event-loop turns seen before this call. */
  turns: number;
}

/** Records the native calls made by `run`, and counts event-loop turns meanwhile. */
async function recordCalls(run: () => Promise<unknown>): Promise<Call[]> {
  const calls: Call[] = [];
  let turns = 0;
  let ticking = true;
  const tick = () => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  nativeCallHook.onCall = (op, length) => calls.push({ op, length, turns });
  try {
    await run();
  } finally {
    nativeCallHook.onCall = undefined;
    ticking = false;
  }
  return calls;
}

function check(calls: Call[], op: string, total: number): void {
  const mine = calls.filter((c) => c.op === op);
  assert.equal(
    mine.reduce((n, c) => n + c.length, 0),
    total,
    `${op} covers ${total} bytes`,
  );
  assert.ok(mine.length >= Math.ceil(total / MAX_CALL_BYTES), `${op}: ${mine.length} calls`);
  for (const c of mine) assert.ok(c.length <= MAX_CALL_BYTES, `${op} of ${c.length} bytes`);
  for (let i = 1; i < mine.length; i++) {
    assert.ok(mine[i]!.turns > mine[i - 1]!.turns, `the event loop ran between ${op} calls`);
  }
}

test('clone: copy_file_range in slices of at most 16 MiB, the event loop running between', async () => {
  const src = sparseFile(join(dir, 'src.raw'), 80 * MiB);
  writeRuns(src, [[4 * MiB, 50 * MiB]]);
  const dst = join(dir, 'dst.raw');
  const calls = await recordCalls(() => cloneFile(src, dst, { strategy: 'sparse-copy' }));
  check(calls, 'copy_file_range', 50 * MiB);
  assert.ok(readFileSync(dst).equals(readFileSync(src)));
});

test('zeroing a file: punch hole and zero range in slices of at most 16 MiB', async () => {
  const path = sparseFile(join(dir, 'zero.raw'), 100 * MiB);
  writeRuns(path, [
    [0, MiB],
    [99 * MiB, MiB],
  ]);
  const file = await LocalFile.open(path, 'r+');
  try {
    const punched = await recordCalls(() => file.zero(0, 100 * MiB, true));
    check(punched, 'punch hole', 100 * MiB);
    const zeroed = await recordCalls(() => file.zero(0, 40 * MiB, false));
    // Filesystems without zero range (tmpfs) answer on the first call; where it works, slices.
    const tried = zeroed.filter((c) => c.op === 'zero range');
    assert.ok(tried.length >= 1);
    for (const c of tried) assert.ok(c.length <= MAX_CALL_BYTES);
    const trimmed = await recordCalls(() => file.trim(0, 33 * MiB));
    check(trimmed, 'punch hole', 33 * MiB);
  } finally {
    await file.close();
  }
  assert.ok(readFileSync(path).equals(Buffer.alloc(100 * MiB)));
});
