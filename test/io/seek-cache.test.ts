/**
 * LocalFile remembers data runs SEEK_HOLE found: repeated questions get the kernel's answers,
 * and zeroing or trimming through the file forgets them (a punched range becomes a hole).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalFile } from '../../src/io/file.js';
import { sparseFile, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir();

function makeSparse(name: string): string {
  const path = sparseFile(join(dir, name), 8 * MiB);
  const fd = openSync(path, 'r+');
  writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, MiB);
  writeSync(fd, randomBytes(MiB), 0, MiB, 5 * MiB);
  closeSync(fd);
  return path;
}

/** Every answer for offsets on a 256 KiB grid. */
function answers(f: LocalFile): string[] {
  const out: string[] = [];
  for (let at = 0; at < 8 * MiB; at += 256 * 1024) {
    out.push(`${at}:${f.seek(at, 'data')}/${f.seek(at, 'hole')}`);
  }
  return out;
}

test('remembered runs answer as the kernel does, and zeroing forgets them', async () => {
  const path = makeSparse('runs.raw');
  const f = await LocalFile.open(path, 'r+');
  const fresh = async () => {
    const g = await LocalFile.open(path);
    try {
      return answers(g);
    } finally {
      await g.close();
    }
  };
  try {
    // The temp directory is on ext4/xfs/tmpfs in CI: all have SEEK_DATA, so this never skips.
    assert.notEqual(f.seek(0, 'data'), 'unsupported', 'the temp filesystem has SEEK_DATA');
    const first = answers(f);
    assert.equal(f.seek(2 * MiB, 'hole'), 3 * MiB);
    assert.deepEqual(answers(f), first); // from the remembered runs now
    assert.deepEqual(first, await fresh());
    await f.zero(2 * MiB, MiB, true);
    assert.deepEqual(answers(f), await fresh());
    if (f.seek(2 * MiB, 'data') === 2 * MiB) return; // this filesystem did not punch a hole
    assert.equal(f.seek(MiB + 5, 'hole'), 2 * MiB);
  } finally {
    await f.close();
  }
});
