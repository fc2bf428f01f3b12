import { UsageError } from '../../errors.js';
import { rebaseUnsafe } from '../../ops/rebase.js';
import { rebaseSafe } from '../../ops/rebase-safe.js';
import { type Command, openOptions, parse, positionals } from '../common.js';

const SYNOPSIS = 'diskpipe rebase [-u] -b BACKING [-F FMT] IMAGE';

export const rebase: Command = {
  name: 'rebase',
  synopsis: SYNOPSIS,
  help: [
    "Changes a qcow2 image's backing file in place, as qemu-img rebase. By default (safe mode)",
    'IMAGE keeps its guest content: every range IMAGE does not allocate is compared between the',
    'old backing chain and BACKING, the old content is written into IMAGE where they differ, and',
    "then the header is rewritten. BACKING must pass the trust rule (inside IMAGE's directory,",
    'the cache, or an --allow-backing DIR) and is stored as given (a relative name is relative',
    "to IMAGE's directory).",
    '  -u              unsafe mode: rewrite the header only (no data is read or written); use it',
    '                  when BACKING holds the same data as the old backing file (moved, converted)',
    '  -b BACKING      the new backing file; -b "" removes the backing file',
    '  -F FMT          format of BACKING, stored in the header (required with a BACKING)',
    '  --allow-backing DIR, --untrusted, --cache-dir DIR   the trust rule, as for reading',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      unsafe: { type: 'boolean', short: 'u' },
      backing: { type: 'string', short: 'b' },
      'backing-format': { type: 'string', short: 'F' },
      untrusted: { type: 'boolean' },
      'allow-backing': { type: 'string', multiple: true },
      'cache-dir': { type: 'string' },
    });
    const [path] = positionals(args, 1, 1, SYNOPSIS) as [string];
    if (values.backing === undefined) throw new UsageError(`usage: ${SYNOPSIS}`);
    const backingFormat = values['backing-format'];
    if (!values.unsafe) {
      await rebaseSafe(path, values.backing, {
        ...(backingFormat !== undefined ? { backingFormat } : {}),
        trust: openOptions(values),
      });
      return 0;
    }
    await rebaseUnsafe(path, values.backing, {
      ...(backingFormat !== undefined ? { backingFormat } : {}),
      trust: openOptions(values),
    });
    return 0;
  },
};
