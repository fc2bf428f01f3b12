import { commitImage } from '../../ops/commit.js';
import { type Command, openOptions, parse, positionals, print } from '../common.js';
import { cliCacheDir } from '../env.js';

const SYNOPSIS = 'diskpipe commit [-b BASE] [--untrusted] [--allow-backing DIR] IMAGE';

export const commit: Command = {
  name: 'commit',
  synopsis: SYNOPSIS,
  help: [
    'Writes the data of the qcow2 overlay IMAGE into its backing file, in place, so the backing',
    'file then holds what IMAGE shows (as qemu-img commit -d: IMAGE is left unchanged).',
    '  -b BASE        commit into BASE, a file deeper in the backing chain (the data of every',
    '                 layer above it is written)',
    'BASE may be raw or qcow2 (written by the in-place qcow2 writer). A BASE inside the diskpipe',
    'cache (--cache-dir, DISKPIPE_CACHE) or without write permission is refused.',
    '  --allow-backing DIR, --untrusted, --cache-dir DIR   the trust rule, as for reading',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      base: { type: 'string', short: 'b' },
      untrusted: { type: 'boolean' },
      'allow-backing': { type: 'string', multiple: true },
      'cache-dir': { type: 'string' },
    });
    const [path] = positionals(args, 1, 1, SYNOPSIS) as [string];
    await commitImage(path, {
      ...(values.base !== undefined ? { base: values.base } : {}),
      cacheDir: cliCacheDir(values['cache-dir']),
      trust: openOptions(values),
    });
    print('Image committed.');
    return 0;
  },
};
