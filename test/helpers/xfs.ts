import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { runChecked, sparseFile } from './peers.js';

/**
 * Mounts a fresh XFS filesystem with reflink on a loop device under `dir` and unmounts it when
 * the test ends. Tests run as root in CI, so this never skips.
 */
export function mountXfs(t: TestContext, dir: string, sizeMiB = 320): string {
  mkdirSync(dir, { recursive: true });
  const backing = sparseFile(join(dir, 'xfs.img'), sizeMiB * 1024 * 1024);
  runChecked('mkfs.xfs', ['-q', '-m', 'reflink=1', backing]);
  const mnt = join(dir, 'xfs');
  mkdirSync(mnt, { recursive: true });
  runChecked('mount', ['-o', 'loop', backing, mnt]);
  t.after(() => spawnSync('umount', [mnt]));
  return mnt;
}
