/**
 * Tuning options are checked the same way by every operation: a value out of range is a
 * UsageError naming the option and its range, never a wrong answer or a hang.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { openImage } from '../../src/open.js';
import { checksumImage } from '../../src/ops/checksum/index.js';
import { cloneFile } from '../../src/ops/clone.js';
import { compareImages } from '../../src/ops/compare.js';
import { convertImage } from '../../src/ops/convert.js';
import { copyImage } from '../../src/ops/copy/index.js';
import { sparseFile, tempDir } from '../helpers/peers.js';
import { writeRuns } from './util.js';

const dir = tempDir();
const MiB = 1024 * 1024;

function rawWith(name: string, seed: number): string {
  const path = sparseFile(join(dir, name), 4 * MiB);
  writeRuns(path, [[MiB, 64 * 1024]], seed);
  return path;
}

const a = rawWith('a.raw', 1);
const b = rawWith('b.raw', 2);

async function refused(run: () => Promise<unknown>, option: string, range: RegExp) {
  await assert.rejects(run, (err: unknown) => {
    assert.ok(err instanceof UsageError, `a UsageError, got ${String(err)}`);
    assert.equal(err.code, 'USAGE');
    assert.ok(err.message.includes(option), `names ${option}: ${err.message}`);
    assert.match(err.message, range);
    return true;
  });
}

test('compare: inFlight 0 is refused (it used to call two different files identical)', async () => {
  const [ia, ib] = [await openImage(a), await openImage(b)];
  try {
    await refused(() => compareImages(ia, ib, { inFlight: 0 }), 'inFlight', /1 to 64/);
    await refused(() => compareImages(ia, ib, { inFlight: 65 }), 'inFlight', /1 to 64/);
    await refused(() => compareImages(ia, ib, { inFlight: 1.5 }), 'inFlight', /1 to 64/);
    // requestSize 0 used to loop forever.
    await refused(
      () => compareImages(ia, ib, { requestSize: 0 }),
      'requestSize',
      /64 KiB to 8 MiB/,
    );
    const r = await compareImages(ia, ib, { inFlight: 1, requestSize: 64 * 1024 });
    assert.equal(r.identical, false);
  } finally {
    await ia.close();
    await ib.close();
  }
});

test('checksum: windowSize, inFlight and threads out of range are refused by name', async () => {
  const image = await openImage(a);
  try {
    await refused(() => checksumImage(image, { inFlight: 0 }), 'inFlight', /1 to 64/);
    await refused(() => checksumImage(image, { threads: -1 }), 'threads', /0 to 256/);
    await refused(() => checksumImage(image, { windowSize: 0 }), 'windowSize', /1 to 256 MiB/);
  } finally {
    await image.close();
  }
});

test('copy and convert: bad tuning is refused before any output exists', async () => {
  const src = await openImage(a);
  const dst = await openImage(b, { writable: true });
  try {
    await refused(() => copyImage(src, dst, { requestSize: 0 }), 'requestSize', /64 KiB/);
    await refused(() => copyImage(src, dst, { inFlight: 100 }), 'inFlight', /1 to 64/);
    const out = join(dir, 'never.raw');
    await refused(() => convertImage(src, out, { inFlight: 0 }), 'inFlight', /1 to 64/);
    await refused(() => convertImage(src, out, { sparseSize: 100 }), 'sparseSize', /512/);
    assert.equal(existsSync(out), false);
  } finally {
    await src.close();
    await dst.close();
  }
});

test('clone: an unknown strategy is refused, not taken as auto', async () => {
  const out = join(dir, 'clone.raw');
  await refused(
    () => cloneFile(a, out, { strategy: 'fast' as 'reflink' }),
    'strategy',
    /auto, reflink, sparse-copy/,
  );
  assert.equal(existsSync(out), false);
});
