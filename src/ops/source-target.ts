/**
 * A target written in place (convert -n, a block device) must not be the image being read,
 * nor a file of its backing chain: the copy would overwrite bytes it has yet to read, and a
 * qcow2 written -O raw onto itself loses its metadata. qemu-img refuses the same pair through
 * its locks. Files are compared by device and inode (block devices by the device they name).
 */
import { stat } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { Image } from '../image/types.js';

export async function refuseWritingSource(dst: string, src: Image): Promise<void> {
  const target = await stat(dst).catch(() => undefined);
  if (!target) return;
  for (let layer: Image | undefined = src; layer; layer = layer.backing) {
    const p = layer.source?.path;
    if (p === undefined) continue;
    const st = await stat(p).catch(() => undefined);
    if (!st) continue;
    const same =
      (st.dev === target.dev && st.ino === target.ino) ||
      (st.isBlockDevice() && target.isBlockDevice() && st.rdev === target.rdev);
    if (!same) continue;
    const what = layer === src ? 'the source image' : `in the backing chain of the source image`;
    throw new UsageError(
      `${dst} is ${what}: writing it in place would overwrite the data being read`,
    );
  }
}
