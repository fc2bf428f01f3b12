import { cloneFile } from '../../ops/clone.js';
import { type Command, parse, positionals, print } from '../common.js';

const SYNOPSIS = 'diskpipe clone SRC DST';

export const clone: Command = {
  name: 'clone',
  synopsis: SYNOPSIS,
  help: [
    'Copies the file SRC (any format) to DST as cheaply as the filesystem allows: a reflink',
    '(shared blocks, O(1)) where supported (XFS, btrfs), else a sparse copy that moves only',
    'data extents (copy_file_range) and keeps holes. DST is written under a temporary name;',
    'a block device DST is written in place (opened exclusively, size checked, holes zeroed).',
    'Prints the strategy used and the bytes really written, e.g. "reflink: 0 bytes written".',
    '  --no-reflink   always make a sparse copy',
    '  --sync         fdatasync a sparse copy before it is renamed into place',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      'no-reflink': { type: 'boolean' },
      sync: { type: 'boolean' },
    });
    const [src, dst] = positionals(args, 2, 2, SYNOPSIS) as [string, string];
    const r = await cloneFile(src, dst, {
      strategy: values['no-reflink'] ? 'sparse-copy' : 'auto',
      sync: values.sync === true,
    });
    const name = r.strategy === 'reflink' ? 'reflink' : 'sparse copy';
    print(`${name}: ${r.bytesWritten} bytes written`);
    return 0;
  },
};
