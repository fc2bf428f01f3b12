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
  const layer = await layerAt(dest, backing);
  if (layer === undefined) return;
  const which = layer === backing ? 'the backing file' : 'in the chain of backing file';
  throw new UsageError(
    `${dest} is ${which} ${backingName}: replacing it would destroy the data the new image reads through it`,
  );
}

/** The layer of `chain` that is the file `path` names (by device and inode), if any. */
export async function layerAt(path: string, chain: Image): Promise<Image | undefined> {
  const target = await stat(path).catch(() => undefined);
  if (!target) return undefined; // a new file cannot be in any chain
  for (let layer: Image | undefined = chain; layer; layer = layer.backing) {
    const p = layer.source?.path;
    if (p === undefined) continue;
    const st = await stat(p).catch(() => undefined);
    if (st && st.dev === target.dev && st.ino === target.ino) return layer;
  }
  return undefined;
}

/** Refuses to point `path` at `backing` when that chain already holds `path`: a loop. */
export async function refuseBackingLoop(
  path: string,
  backing: Image,
  backingName: string,
): Promise<void> {
  if ((await layerAt(path, backing)) === undefined) return;
  throw new UsageError(
    `${path} is in the backing chain of ${backingName}: it cannot become its own backing file`,
  );
}
