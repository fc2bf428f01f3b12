/**
 * resize and rebase -u edit a local file's bytes in place. A URL or stdin given to them was
 * looked up as a file name and reported as "ENOENT: no such file or directory", which sent
 * the user looking for a missing file instead of saying what the command needs.
 */
import { UsageError } from '../errors.js';
import { schemeOf } from '../sources/index.js';

export function refuseNonLocal(spec: string, command: string): void {
  if (spec === '-') {
    throw new UsageError(`${command} edits an image file in place; stdin ('-') cannot be edited`);
  }
  if (schemeOf(spec) !== undefined) {
    throw new UsageError(
      `${command} edits an image file in place; give a local path, not the URL ${spec}`,
    );
  }
}
