import { parseDuration } from '../../cache/maintenance.js';
import type { CacheEntry } from '../../cache/records.js';
import { UsageError } from '../../errors.js';
import { openCache } from '../cache-object.js';
import { type Command, humanSize, parse, parseSize, positionals, print } from '../common.js';
import { cacheVerify } from './cache-verify.js';

const SYNOPSIS =
  'diskpipe cache ls [--json] | show [--json] REF | rm [--force] REF | unpin PATH | prune [--older-than DUR] [--max-size SIZE] [--drop-missing-pins] [--dry-run] | verify [REF]';

const CACHE_DIR = { 'cache-dir': { type: 'string' } } as const;

export const cache: Command = {
  name: 'cache',
  synopsis: SYNOPSIS,
  help: [
    'Lists and maintains the image cache (default $XDG_CACHE_HOME/diskpipe; --cache-dir or DISKPIPE_CACHE).',
    '  ls [--json]       entries: content digest, URLs, virtual/on-disk/download sizes, pins, last use',
    '  show [--json] REF one entry in full; REF is a URL, a pulled file, or a digest prefix (>= 8 hex)',
    '  rm [--force] REF  removes an entry; refuses while a disk (qcow2 overlay) uses it unless --force',
    '  unpin PATH        forgets that the disk at PATH uses an entry (pins are never dropped otherwise;',
    '                    a pin whose disk is missing is shown as unverified and still counts)',
    '  prune [--older-than DUR] [--max-size SIZE] [--drop-missing-pins] [--dry-run]',
    '                    removes least recently used entries (never pinned ones), temporary files of',
    '                    dead processes and idle partial downloads; --drop-missing-pins first drops',
    '                    pins whose disk is missing',
    '  verify [REF]      recomputes content digests; exit 1 on any mismatch; a mismatching entry is',
    '                    quarantined (disk create and pull --offline refuse it until pulled again)',
  ].join('\n'),
  async run(argv) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'ls':
        return list(rest);
      case 'show':
        return show(rest);
      case 'rm':
        return remove(rest);
      case 'prune':
        return pruneCommand(rest);
      case 'unpin':
        return unpinCommand(rest);
      case 'verify':
        return cacheVerify(rest);
      default:
        throw new UsageError(`usage: ${SYNOPSIS}`);
    }
  },
};

/** The camelCase JSON an entry is shown as (documented in the README). */
export function entryJson(e: CacheEntry) {
  return {
    contentDigest: e.blob.contentDigest,
    virtualSize: e.blob.virtualSize,
    allocatedSize: e.blob.allocatedSize,
    created: e.blob.created,
    lastUsed: e.blob.lastUsed,
    sources: e.sources.map((s) => ({
      url: s.url,
      etag: s.etag ?? null,
      lastModified: s.lastModified ?? null,
      downloadSize: s.download.size,
      downloadSha256: s.download.sha256,
      verifiedDigest: s.download.verified
        ? `${s.download.verified.algorithm}:${s.download.verified.hex}`
        : null,
      sourceFormat: s.sourceFormat,
      compression: s.compression,
      lastUsed: s.lastUsed,
    })),
    pins: e.pins.map((p) => p.path),
    /** Pins whose disk was not found: kept (they still protect the entry) but flagged. */
    unverifiedPins: e.pins.filter((p) => p.unverified).map((p) => p.path),
    /** Set when `cache verify` quarantined the entry. */
    bad: e.bad ? { problem: e.bad.problem, time: e.bad.time } : null,
  };
}

async function list(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, { ...CACHE_DIR, json: { type: 'boolean' } });
  positionals(args, 0, 0, 'diskpipe cache ls [--json]');
  const entries = await openCache(values['cache-dir']).list();
  if (values.json) {
    print(JSON.stringify(entries.map(entryJson), null, 2));
    return 0;
  }
  print(
    `${'DIGEST'.padEnd(14)}${'VIRTUAL'.padEnd(11)}${'ON DISK'.padEnd(11)}${'DOWNLOAD'.padEnd(11)}${'PINS'.padEnd(6)}${'LAST USED'.padEnd(22)}SOURCE`,
  );
  for (const e of entries) {
    const download = e.sources[0] ? humanSize(e.sources[0].download.size) : '-';
    const source = e.sources.map((s) => s.url).join(' ') || '-';
    print(
      `${e.blob.contentDigest.slice(0, 12).padEnd(14)}${humanSize(e.blob.virtualSize).padEnd(11)}${humanSize(e.blob.allocatedSize).padEnd(11)}${download.padEnd(11)}${String(e.pins.length).padEnd(6)}${e.blob.lastUsed.slice(0, 19).replace('T', ' ').padEnd(22)}${source}`,
    );
    for (const p of e.pins.filter((pin) => pin.unverified))
      print(`  unverified pin: ${p.path} (disk not found; cache unpin PATH removes the pin)`);
    if (e.bad) print(`  quarantined by cache verify: ${e.bad.problem} (pull again to repair)`);
  }
  return 0;
}

async function show(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, { ...CACHE_DIR, json: { type: 'boolean' } });
  const [ref] = positionals(args, 1, 1, 'diskpipe cache show [--json] REF');
  const cache = openCache(values['cache-dir']);
  const entry = await cache.entry(ref!);
  const path = cache.path(entry);
  if (values.json) {
    print(JSON.stringify({ ...entryJson(entry), path }, null, 2));
    return 0;
  }
  const b = entry.blob;
  const lines = [
    `digest:        ${b.contentDigest}`,
    `file:          ${path}`,
    `virtual size:  ${humanSize(b.virtualSize)} (${b.virtualSize} bytes)`,
    `on disk:       ${humanSize(b.allocatedSize)}`,
    `created:       ${b.created}`,
    `last used:     ${b.lastUsed}`,
  ];
  for (const s of entry.sources) {
    const verified = s.download.verified
      ? `, verified ${s.download.verified.algorithm}:${s.download.verified.hex}`
      : '';
    lines.push(
      `source:        ${s.url}`,
      `  format:      ${s.sourceFormat}${s.compression ? ` (${s.compression})` : ''}`,
      `  download:    ${humanSize(s.download.size)}, sha256 ${s.download.sha256}${verified}`,
    );
  }
  for (const p of entry.pins)
    lines.push(`pinned by:     ${p.path}${p.unverified ? ' (unverified: disk not found)' : ''}`);
  if (entry.bad) lines.push(`quarantined:   ${entry.bad.problem} (pull again to repair)`);
  print(lines.join('\n'));
  return 0;
}

async function remove(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, { ...CACHE_DIR, force: { type: 'boolean' } });
  const [ref] = positionals(args, 1, 1, 'diskpipe cache rm [--force] REF');
  const cache = openCache(values['cache-dir']);
  const entry = await cache.entry(ref!);
  if (entry.pins.length > 0 && values.force) {
    process.stderr.write(
      `diskpipe: warning: removing an entry used by ${entry.pins.map((p) => p.path).join(', ')}; those disks lose their backing file\n`,
    );
  }
  await cache.remove(entry, { force: values.force });
  print(`removed ${entry.blob.contentDigest} (${humanSize(entry.blob.allocatedSize)})`);
  return 0;
}

async function pruneCommand(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, {
    ...CACHE_DIR,
    'older-than': { type: 'string' },
    'max-size': { type: 'string' },
    'dry-run': { type: 'boolean' },
    'drop-missing-pins': { type: 'boolean' },
  });
  positionals(
    args,
    0,
    0,
    'diskpipe cache prune [--older-than DUR] [--max-size SIZE] [--drop-missing-pins] [--dry-run]',
  );
  const olderThan = values['older-than'];
  const olderThanMs = olderThan === undefined ? undefined : parseDuration(olderThan);
  if (olderThan !== undefined && olderThanMs === undefined)
    throw new UsageError(`invalid duration '${olderThan}' (e.g. 30d, 12h, 45m)`);
  const maxSize =
    values['max-size'] === undefined ? undefined : parseSize(values['max-size'], 'max size');
  const result = await openCache(values['cache-dir']).prune({
    olderThanMs,
    maxSize,
    dryRun: values['dry-run'],
    dropMissingPins: values['drop-missing-pins'],
  });
  const verb = values['dry-run'] ? 'would remove' : 'removed';
  for (const p of result.droppedPins) print(`${verb} pin of missing disk ${p.path}`);
  for (const e of result.removed)
    print(`${verb} ${e.blob.contentDigest} (${humanSize(e.blob.allocatedSize)})`);
  for (const e of result.keptPinned)
    print(`kept ${e.blob.contentDigest}: used by ${e.pins.length} disk(s)`);
  for (const f of result.staleTemporaries) print(`${verb} temporary file ${f}`);
  print(
    `${verb} ${result.removed.length} entr${result.removed.length === 1 ? 'y' : 'ies'}, ${humanSize(result.freed)}`,
  );
  return 0;
}

async function unpinCommand(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, CACHE_DIR);
  const [path] = positionals(args, 1, 1, 'diskpipe cache unpin PATH');
  for (const digest of await openCache(values['cache-dir']).unpin(path!))
    print(`unpinned ${path} from ${digest}`);
  return 0;
}
