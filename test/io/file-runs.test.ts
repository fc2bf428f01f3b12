/**
 * LocalFile.runs, the one SEEK_DATA/SEEK_HOLE walker: ordered runs that exactly cover the
 * range, data where data was written, holes elsewhere and past the end of the file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type FileRun, LocalFile } from '../../src/io/file.js';
import { sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir();

function covers(runs: FileRun[], offset: number, length: number): void {
  let pos = offset;
  for (const r of runs) {
    assert.equal(r.offset, pos, 'runs are contiguous');
    assert.ok(r.length > 0, 'runs are not empty');
    pos += r.length;
  }
  assert.equal(pos, offset + length, 'runs cover the range');
}

test('runs: data and holes as written, whole range covered, a hole past the end', async () => {
  const path = sparseFile(join(dir, 'runs.raw'), 8 * MiB);
  const fd = openSync(path, 'r+');
  writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, MiB);
  writeSync(fd, randomBytes(MiB), 0, MiB, 5 * MiB);
  closeSync(fd);
  const f = await LocalFile.open(path);
  try {
    assert.notEqual(f.seek(0, 'data'), 'unsupported', 'the temp filesystem has SEEK_DATA');
    const all = [...f.runs(0, 8 * MiB)];
    covers(all, 0, 8 * MiB);
    assert.deepEqual(all, [
      { offset: 0, length: MiB, hole: true },
      { offset: MiB, length: 2 * MiB, hole: false },
      { offset: 3 * MiB, length: 2 * MiB, hole: true },
      { offset: 5 * MiB, length: MiB, hole: false },
      { offset: 6 * MiB, length: 2 * MiB, hole: true },
    ]);
    // A range starting and ending inside runs is clipped to it.
    assert.deepEqual(
      [...f.runs(2 * MiB, 4 * MiB)],
      [
        { offset: 2 * MiB, length: MiB, hole: false },
        { offset: 3 * MiB, length: 2 * MiB, hole: true },
        { offset: 5 * MiB, length: MiB, hole: false },
      ],
    );
    // Past the end of the file (a host range a corrupt table may name) reads as a hole.
    assert.deepEqual(
      [...f.runs(7 * MiB, 3 * MiB)],
      [{ offset: 7 * MiB, length: 3 * MiB, hole: true }],
    );
    assert.deepEqual([...f.runs(3 * MiB, 0)], []);
  } finally {
    await f.close();
  }
});
