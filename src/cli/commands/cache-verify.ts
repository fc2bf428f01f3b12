import { openCache } from '../cache-object.js';
import { parse, positionals, print } from '../common.js';

/** `cache verify [REF]`: exit 0 when every checked entry matches its digest, 1 otherwise. */
export async function cacheVerify(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, { 'cache-dir': { type: 'string' } });
  const [ref] = positionals(args, 0, 1, 'diskpipe cache verify [REF]');
  const cache = openCache(values['cache-dir']);
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
}
