import { UsageError } from '../../errors.js';
import { rebaseUnsafe } from '../../ops/rebase.js';
import { type Command, openOptions, parse, positionals } from '../common.js';

const SYNOPSIS = 'diskpipe rebase -u -b BACKING [-F FMT] IMAGE';

export const rebase: Command = {
  name: 'rebase',
  synopsis: SYNOPSIS,
  help: [
    "Changes a qcow2 image's backing file reference in place (the header only; no data is",
    'read or written), as qemu-img rebase -u. Use it when BACKING holds the same data as the',
    'old backing file (it was moved, renamed or converted). BACKING must pass the trust rule',
    "(inside IMAGE's directory, the cache, or an --allow-backing DIR) and is stored as given",
    "(a relative name is relative to IMAGE's directory).",
    '  -u              unsafe mode: required (the safe rebase, which copies the clusters where',
    '                  old and new backing differ, is not implemented yet)',
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
    if (!values.unsafe) {
      throw new UsageError(
        'safe rebase (without -u) is not implemented yet; use -u when the new backing file holds the same data',
      );
    }
    const backingFormat = values['backing-format'];
    await rebaseUnsafe(path, values.backing, {
      ...(backingFormat !== undefined ? { backingFormat } : {}),
      trust: openOptions(values),
    });
    return 0;
  },
};
