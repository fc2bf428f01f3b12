/**
 * The guided fuzzer's own parts: coverage feedback sees new blocks once, the read budget stops
 * an endless loop of reads, and only a DiskpipeError with a clear message counts as a refusal.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CorruptImageError } from '../../src/errors.js';
import { LocalFile } from '../../src/io/file.js';
import { tempDir } from '../helpers/peers.js';
import { BlockCoverage } from './guided/coverage.js';
import { failureOf, MAX_READS, ReadBudget, resetReads } from './guided/targets.js';

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
