import type { ByteSource } from '../../image/types.js';
import { LocalFile } from '../../io/file.js';

export { readExactInto as readExact } from '../../io/read-exact.js';

export interface HostRun {
  /** Host offset. */
  offset: number;
  length: number;
  hole: boolean;
}

/** Splits host range [offset, offset+length) into data and hole runs. */
export function* hostRuns(file: ByteSource, offset: number, length: number): Iterable<HostRun> {
  const end = offset + length;
  if (!(file instanceof LocalFile)) {
    yield { offset, length, hole: false };
    return;
  }
  let pos = offset;
  while (pos < end) {
    const data = file.seek(pos, 'data');
    if (data === 'unsupported') {
      yield { offset: pos, length: end - pos, hole: false };
      return;
    }
    const dataStart = data === 'eof' ? end : Math.min(data, end);
    if (dataStart > pos) {
      yield { offset: pos, length: dataStart - pos, hole: true };
      pos = dataStart;
      if (pos >= end) return;
    }
    const hole = file.seek(pos, 'hole');
    const dataEnd = typeof hole === 'number' && hole > pos ? Math.min(hole, end) : end;
    yield { offset: pos, length: dataEnd - pos, hole: false };
    pos = dataEnd;
  }
}
