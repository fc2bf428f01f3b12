/**
 * Host-file reads the formats share: exact reads, and a data segment split into the host
 * file's data and holes (a hole reads as zeroes). Sources other than a local file cannot tell
 * holes apart, so their segments are all data.
 */
import type { ByteSource } from '../image/types.js';
import { type FileRun, LocalFile } from '../io/file.js';

export { readExactInto as readExact } from '../io/read-exact.js';

/** Splits host range [offset, offset+length) into data and hole runs. */
export function hostRuns(file: ByteSource, offset: number, length: number): Iterable<FileRun> {
  if (file instanceof LocalFile) return file.runs(offset, length);
  return [{ offset, length, hole: false }];
}
