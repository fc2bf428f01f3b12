import { UsageError } from '../../errors.js';
import { rebaseUnsafe } from '../../ops/rebase.js';
import { rebaseSafe } from '../../ops/rebase-safe.js';
import { defineCommand } from '../command.js';
import { openOptions } from '../common.js';
import { flag, value } from '../options.js';
import { FORCE_SHARE_OPTION, trustOptions } from '../shared-options.js';

const SYNOPSIS = 'diskpipe rebase [-u] [-U] -b BACKING [-F FMT] IMAGE';

export const rebase = defineCommand({
  synopsis: SYNOPSIS,
  summary: [
    "Changes a qcow2 image's backing file in place, as qemu-img rebase. By default (safe mode)",
    'IMAGE keeps its guest content: every range IMAGE does not allocate is compared between the',
    'old backing chain and BACKING, the old content is written into IMAGE where they differ, and',
    "then the header is rewritten. BACKING must pass the trust rule (inside IMAGE's directory,",
    'the cache, or an --allow-backing DIR) and is stored as given (a relative name is relative',
    "to IMAGE's directory).",
  ],
  options: {
    unsafe: flag(
      [
        'unsafe mode: rewrite the header only (no data is read or written); use it',
        'when BACKING holds the same data as the old backing file (moved, converted)',
      ],
      { short: 'u' },
    ),
    backing: value('BACKING', 'the new backing file; -b "" removes the backing file', {
      short: 'b',
    }),
    'backing-format': value(
      'FMT',
      'format of BACKING, stored in the header (required with a BACKING)',
      { short: 'F' },
    ),
    // Safe mode reads the old and new backing chains: one a VM writes is refused without it.
    ...FORCE_SHARE_OPTION,
    ...trustOptions(),
  },
  column: 18,
  operandCount: [1, 1],
  async run(values, [image]) {
    const path = image!;
    if (values.backing === undefined) throw new UsageError(`usage: ${SYNOPSIS}`);
    const backingFormat = values['backing-format'];
    const opts = {
      ...(backingFormat !== undefined ? { backingFormat } : {}),
      trust: openOptions(values),
    };
    if (values.unsafe) await rebaseUnsafe(path, values.backing, opts);
    else await rebaseSafe(path, values.backing, opts);
    return 0;
  },
});
