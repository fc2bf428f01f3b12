import { commitImage } from '../../ops/commit.js';
import { defineCommand } from '../command.js';
import { openOptions, print } from '../common.js';
import { cliCacheDir } from '../env.js';
import { value } from '../options.js';
import { trustOptions } from '../shared-options.js';

export const commit = defineCommand({
  synopsis: 'diskpipe commit [-b BASE] [--untrusted] [--allow-backing DIR] IMAGE',
  summary: [
    'Writes the data of the qcow2 overlay IMAGE into its backing file, in place, so the backing',
    'file then holds what IMAGE shows (as qemu-img commit -d: IMAGE is left unchanged).',
  ],
  options: {
    base: value(
      'BASE',
      [
        'commit into BASE, a file deeper in the backing chain (the data of every',
        'layer above it is written)',
      ],
      { short: 'b' },
    ),
    ...trustOptions(),
  },
  column: 17,
  notes: [
    'BASE may be raw or qcow2 (written by the in-place qcow2 writer). A BASE inside the diskpipe',
    'cache (--cache-dir, DISKPIPE_CACHE) or without write permission is refused.',
  ],
  operandCount: [1, 1],
  async run(values, [path]) {
    await commitImage(path!, {
      ...(values.base !== undefined ? { base: values.base } : {}),
      cacheDir: cliCacheDir(values['cache-dir']),
      trust: openOptions(values),
    });
    print('Image committed.');
    return 0;
  },
});
