/**
 * A target written in place (convert -n, a block device) must not be the image being read,
 * nor a file of its backing chain: the copy would overwrite bytes it has yet to read, and a
 * qcow2 written -O raw onto itself loses its metadata. qemu-img refuses the same pair through
 * its locks. Files are compared by device and inode, block devices by the device they name,
 * and a loop device (or a partition of one) also stands for the file it is attached to.
 */
import type { Stats } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import type { Image } from '../image/types.js';
import { sysBlockPath } from '../io/device-number.js';

export async function refuseWritingSource(dst: string, src: Image): Promise<void> {
  const target = await stat(dst).catch(() => undefined);
  if (!target) return;
  const targets = await identities(target);
  for (let layer: Image | undefined = src; layer; layer = layer.backing) {
    const p = layer.source?.path;
    if (p === undefined) continue;
    const st = await stat(p).catch(() => undefined);
    if (!st) continue;
    const layerIds = await identities(st);
    if (!layerIds.some((id) => targets.includes(id))) continue;
    const what = layer === src ? 'the source image' : `in the backing chain of the source image`;
    throw new UsageError(
      `${dst} is ${what}: writing it in place would overwrite the data being read`,
    );
  }
}

/** What a file stands for: its inode; for a block device, the device, and a loop's file. */
async function identities(st: Stats): Promise<string[]> {
  if (!st.isBlockDevice()) return [`${st.dev}:${st.ino}`];
  const ids = [`block ${st.rdev}`];
  const backing = await loopBackingFile(st.rdev);
  const file = backing === undefined ? undefined : await stat(backing).catch(() => undefined);
  if (file) ids.push(`${file.dev}:${file.ino}`);
  return ids;
}

/** The file a loop device (or a partition of one) reads, from sysfs; undefined otherwise. */
async function loopBackingFile(rdev: number): Promise<string | undefined> {
  const dir = await realpath(sysBlockPath(rdev)).catch(() => undefined);
  if (!dir) return undefined;
  for (const sysDir of [dir, join(dir, '..')]) {
    const text = await readFile(join(sysDir, 'loop', 'backing_file'), 'utf8').catch(() => '');
    // A file deleted while attached reads "PATH (deleted)": no name to compare then.
    const path = text.replace(/\n$/, '');
    if (path !== '') return path;
  }
  return undefined;
}
