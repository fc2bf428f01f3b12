import { verifyEntry } from '../../cache/verify.js';
import { parse, positionals, print } from '../common.js';
import { openIndex } from './cache.js';

/** `cache verify [REF]`: exit 0 when every checked entry matches its digest, 1 otherwise. */
export async function cacheVerify(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, { 'cache-dir': { type: 'string' } });
  const [ref] = positionals(args, 0, 1, 'diskpipe cache verify [REF]');
  const index = openIndex(values['cache-dir']);
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
}
