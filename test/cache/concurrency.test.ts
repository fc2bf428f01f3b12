/**
 * prune --max-size 0, rm, pull and disk create (raw and qcow2, to their own DESTs and two to
 * one DEST) racing for several rounds: every disk reported created matches the source
 * (qemu-img compare), every overlay's backing file exists and is pinned, failed creates leave
 * no DEST and no pin, and no record points at missing data. `npm run soak` runs 30 rounds.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { tempDir } from '../helpers/peers.js';
import { concurrencyMatrix, soakImages } from '../helpers/soak.js';

const images = await soakImages(join(tempDir('diskpipe-race-'), 'images'), 64 * 1024 * 1024);
after(() => images.close());

test('cache: rm/prune/pull racing disk create never hand out a broken disk', async () => {
  const counts = await concurrencyMatrix(images, 3, 7);
  assert.deepEqual(counts.problems, []);
  assert.equal(counts.runs, 3);
  assert.equal(counts.brokenDisks, 0);
  assert.equal(counts.corruptRecords, 0);
  assert.equal(counts.leftoverTemporaries, 0);
});
