/**
 * The guided fuzzer's own parts: coverage feedback sees new blocks once, the read budget stops
 * an endless loop of reads, only a DiskpipeError with a clear message counts as a refusal, and
 * the nbd-client target's recorded sessions replay to the end of the exercise.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptImageError } from '../../src/errors.js';
import { LocalFile } from '../../src/io/file.js';
import { tempDir } from '../helpers/peers.js';
import { exercise } from './exercise.js';
import { BlockCoverage } from './guided/coverage.js';
import { CORPUS_DIR, loadSeeds } from './guided/seeds.js';
import {
  Context,
  failureOf,
  LIMITS,
  MAX_READS,
  NBD_RNG_SEED,
  ReadBudget,
  resetReads,
} from './guided/targets.js';
import { Rng } from './mutate.js';

test('coverage reports the blocks of dist/src an input reached first, once', async () => {
  const coverage = new BlockCoverage();
  await coverage.start();
  try {
    const path = join(tempDir('diskpipe-guided-cov-'), 'f');
    writeFileSync(path, 'x');
    const first = async () => {
      const f = await LocalFile.open(path);
      await f.read(new Uint8Array(1), 0);
      await f.close();
    };
    await first();
    assert.ok((await coverage.take()) > 0, 'LocalFile blocks are new');
    await first();
    assert.equal(await coverage.take(), 0, 'the same blocks again are not new');
  } finally {
    coverage.stop();
  }
});

test('the read budget turns an endless read loop into a finding', async () => {
  const path = join(tempDir('diskpipe-guided-reads-'), 'f');
  writeFileSync(path, 'x');
  const f = await LocalFile.open(path);
  resetReads();
  let n = 0;
  const loop = async () => {
    for (;;) {
      await f.read(new Uint8Array(1), 0);
      n++;
    }
  };
  const err = await loop().catch((e: unknown) => e);
  await f.close();
  assert.ok(err instanceof ReadBudget);
  assert.equal(n, MAX_READS);
  assert.match(failureOf(err) ?? '', /^hang: more than/);
  resetReads();
});

test('only a DiskpipeError with a clear message is a proper refusal', () => {
  assert.equal(failureOf(new CorruptImageError('bad L1 table')), undefined);
  assert.match(failureOf(new RangeError('offset out of bounds')) ?? '', /not a DiskpipeError/);
  assert.match(failureOf(new CorruptImageError('size undefined')) ?? '', /unclear message/);
});

test('recorded NBD sessions replay through the fake server to the end of the exercise', async () => {
  // Sent all at once, a session's first reply came before its request ("reply for unknown
  // cookie 1"): no input of the nbd-client target got past the handshake.
  const ctx = new Context(tempDir('diskpipe-guided-nbd-'));
  try {
    const socket = await ctx.fakeServer();
    const sessions = loadSeeds(CORPUS_DIR, 'nbd-client').filter(
      (s) => !/^(diskpipe-replies|nbdkit-read-errors)/.test(s.name),
    );
    assert.ok(sessions.length >= 3, sessions.map((s) => s.name).join(', '));
    for (const s of sessions) {
      ctx.reply = s.bytes;
      const spec = `nbd+unix:///?socket=${socket}`;
      const o = await exercise(spec, {}, new Rng(NBD_RNG_SEED), LIMITS);
      assert.deepEqual([o.stage, o.message], ['close', undefined], s.name);
    }
  } finally {
    await ctx.close();
  }
});
