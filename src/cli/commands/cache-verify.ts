import { CacheLayout } from '../../cache/layout.js';
import { CacheIndex } from '../../cache/records.js';
import { verifyEntry } from '../../cache/verify.js';
import { defineCommand } from '../command.js';
import { print } from '../common.js';
import { CACHE_DIR_OPTION } from '../shared-options.js';

/** `cache verify [REF]`: exit 0 when every checked entry matches its digest, 1 otherwise. */
export const cacheVerify = defineCommand({
  synopsis: 'diskpipe cache verify [REF]',
  summary: [
    'recomputes content digests; exit 1 on any mismatch; a mismatching entry is',
    'quarantined (disk create and pull --offline refuse it until pulled again)',
  ],
  options: CACHE_DIR_OPTION,
  operandCount: [0, 1],
  async run(values, [ref]) {
    const index = new CacheIndex(new CacheLayout(values['cache-dir']));
    const entries = ref ? [await index.resolve(ref)] : await index.entries();
    let bad = 0;
    for (const entry of entries) {
      const r = await verifyEntry(index, entry);
      if (!r.ok) bad++;
      print(
        `${r.ok ? 'ok' : 'MISMATCH'}  ${entry.blob.contentDigest}${r.problem ? `  (${r.problem}${r.actual ? `: ${r.actual}` : ''})` : ''}`,
      );
    }
    if (bad > 0) print('mismatching entries are quarantined until pulled again');
    print(
      `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} checked, ${bad} mismatch${bad === 1 ? '' : 'es'}`,
    );
    return bad === 0 ? 0 : 1;
  },
});
