import { cloneFile } from '../../ops/clone.js';
import { defineCommand } from '../command.js';
import { print } from '../common.js';
import { flag } from '../options.js';

export const clone = defineCommand({
  synopsis: 'diskpipe clone SRC DST',
  summary: [
    'Copies the file SRC (any format) to DST as cheaply as the filesystem allows: a reflink',
    '(shared blocks, O(1)) where supported (XFS, btrfs), else a sparse copy that moves only',
    'data extents (copy_file_range) and keeps holes. DST is written under a temporary name;',
    'a block device DST is written in place (opened exclusively, size checked, holes zeroed).',
    'Prints the strategy used and the bytes really written, e.g. "reflink: 0 bytes written".',
  ],
  options: {
    'no-reflink': flag('always make a sparse copy'),
    sync: flag('fdatasync a sparse copy before it is renamed into place'),
  },
  operandCount: [2, 2],
  async run(values, [src, dst]) {
    const r = await cloneFile(src!, dst!, {
      strategy: values['no-reflink'] ? 'sparse-copy' : 'auto',
      sync: values.sync === true,
    });
    const name = r.strategy === 'reflink' ? 'reflink' : 'sparse copy';
    print(`${name}: ${r.bytesWritten} bytes written`);
    return 0;
  },
});
