/**
 * The short soak (fixed seed): pulls killed with kill -9 at points spread over a whole pull
 * resume without corrupt records, full re-downloads or leftover temporary files.
 * `npm run soak` runs the same matrix with 200 runs.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { tempDir } from '../helpers/peers.js';
import { killMatrix, soakImages } from '../helpers/soak.js';

const images = await soakImages(join(tempDir('diskpipe-soak-'), 'images'), 6 * 1024 * 1024);
after(() => images.close());

test('soak: 6 pulls killed with kill -9 at random points resume cleanly', async () => {
  const counts = await killMatrix(images, 6, 20261207, undefined, true);
  assert.deepEqual(counts.problems, []);
  assert.equal(counts.runs, 6);
  assert.equal(counts.corruptRecords, 0);
  assert.equal(counts.failedResumes, 0);
  assert.equal(counts.leftoverTemporaries, 0);
});
