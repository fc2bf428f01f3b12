/**
 * A new overlay must not replace its own backing file (or a file deeper in that chain):
 * the file's data would be lost and the new image would back onto itself, which no program
 * can open. Compared by device and inode, so another name for the same file (`./base`, a
 * symlink, a hard link) is caught too.
 */
import { stat } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { Image } from '../image/types.js';

export async function refuseReplacingBacking(
  dest: string,
  backing: Image,
  backingName: string,
): Promise<void> {
  const target = await stat(dest).catch(() => undefined);
  if (!target) return; // a new file cannot be in any chain
  for (let layer: Image | undefined = backing; layer; layer = layer.backing) {
    const path = layer.source?.path;
    if (path === undefined) continue;
    const st = await stat(path).catch(() => undefined);
    if (st && st.dev === target.dev && st.ino === target.ino) {
      const which = layer === backing ? 'the backing file' : 'in the chain of backing file';
      throw new UsageError(
        `${dest} is ${which} ${backingName}: replacing it would destroy the data the new image reads through it`,
      );
    }
  }
}
