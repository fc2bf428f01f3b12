/**
 * What a destination path names, decided before any work is done: a new name or a regular
 * file (written under a temporary name and renamed), or a block device (written in place).
 * Anything else — a directory, character device, FIFO or socket — is refused: renaming a file
 * over a device node would "succeed" and write nowhere useful (issue 10).
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ioError, UsageError } from '../errors.js';
import { refuseReplacingInUse } from './qemu-locks.js';

export type DestinationKind = 'new' | 'file' | 'block-device';

export interface DestinationRules {
  /** Block devices are written in place (convert, clone); false refuses them (create). */
  blockDevice: boolean;
}

export async function destinationKind(
  path: string,
  rules: DestinationRules,
): Promise<DestinationKind> {
  let st: Stats;
  try {
    st = await stat(path); // follows symlinks: /dev/disk/by-id/… names a device
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'new'; // creating it says why not
    throw ioError(err, `cannot write to ${path}`);
  }
  if (st.isFile()) {
    await refuseReplacingInUse(path);
    return 'file';
  }
  if (st.isBlockDevice()) {
    if (rules.blockDevice) return 'block-device';
    throw new UsageError(
      `cannot write to ${path}: it is a block device (this command creates image files; use 'diskpipe convert' to write an image onto a device)`,
    );
  }
  const allowed = rules.blockDevice ? 'a regular file or a block device' : 'a regular file';
  throw new UsageError(
    `cannot write to ${path}: it is ${describe(st)} (the destination must be ${allowed})`,
  );
}

function describe(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}
