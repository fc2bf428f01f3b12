import { print } from '../common.js';
import { cacheCommand } from './cache-command.js';

/** `cache verify [REF]`: exit 0 when every checked entry matches its digest, 1 otherwise. */
export const cacheVerify = cacheCommand({
  synopsis: 'diskpipe cache verify [REF]',
  summary: [
    'recomputes content digests; exit 1 on any mismatch; a mismatching entry is',
    'quarantined (disk create and pull --offline refuse it until pulled again)',
  ],
  operandCount: [0, 1],
  async run(cache, _values, [ref]) {
    const entries = ref ? [await cache.entry(ref)] : await cache.list();
    let bad = 0;
    for (const entry of entries) {
      const r = await cache.verify(entry);
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
