/**
 * An image without any write permission bit is read-only on purpose (the cache's blobs, a
 * golden image made chmod a-w): in-place edits refuse it even when root could write it.
 */
import { fstatSync } from 'node:fs';
import { NotCapableError } from '../errors.js';

export function refuseReadOnlyImage(fd: number, name: string): void {
  const st = fstatSync(fd);
  if (st.isFile() && (st.mode & 0o222) === 0) {
    throw new NotCapableError(
      `${name} is read-only (no write permission bits); refusing to change it in place (chmod u+w to allow it)`,
    );
  }
}
