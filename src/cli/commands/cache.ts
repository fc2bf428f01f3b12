import { parseDuration } from '../../cache/maintenance.js';
import type { CacheEntry } from '../../cache/records.js';
import { UsageError } from '../../errors.js';
import { defineGroup } from '../command.js';
import { humanSize, parseSize, print } from '../common.js';
import { flag, value } from '../options.js';
import { cacheCommand } from './cache-command.js';
import { cacheVerify } from './cache-verify.js';

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

const list = cacheCommand({
  synopsis: 'diskpipe cache ls [--json]',
  summary: 'entries: content digest, URLs, virtual/on-disk/download sizes, pins, last use',
  options: { json: flag('print the entries as camelCase JSON') },
  operandCount: [0, 0],
  async run(cache, values) {
    const entries = await cache.list();
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
  },
});

const show = cacheCommand({
  synopsis: 'diskpipe cache show [--json] REF',
  summary: 'one entry in full; REF is a URL, a pulled file, or a digest prefix (>= 8 hex)',
  options: { json: flag('print the entry as camelCase JSON') },
  operandCount: [1, 1],
  async run(cache, values, [ref]) {
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
  },
});

const remove = cacheCommand({
  synopsis: 'diskpipe cache rm [--force] REF',
  summary: 'removes an entry; refuses while a disk (qcow2 overlay) uses it unless --force',
  options: {
    force: flag('remove it even while a disk uses it (that disk loses its backing file)'),
  },
  operandCount: [1, 1],
  async run(cache, values, [ref]) {
    const entry = await cache.entry(ref!);
    if (entry.pins.length > 0 && values.force) {
      process.stderr.write(
        `diskpipe: warning: removing an entry used by ${entry.pins.map((p) => p.path).join(', ')}; those disks lose their backing file\n`,
      );
    }
    await cache.remove(entry, { force: values.force });
    print(`removed ${entry.blob.contentDigest} (${humanSize(entry.blob.allocatedSize)})`);
    return 0;
  },
});

const pruneCommand = cacheCommand({
  synopsis:
    'diskpipe cache prune [--older-than DUR] [--max-size SIZE] [--drop-missing-pins] [--dry-run]',
  summary: [
    'removes least recently used entries (never pinned ones), temporary files of',
    'dead processes and idle partial downloads; --drop-missing-pins first drops',
    'pins whose disk is missing',
  ],
  options: {
    'older-than': value('DUR', 'entries not used for DUR (30d, 12h, 45m)'),
    'max-size': value('SIZE', 'until the cache holds at most SIZE'),
    'drop-missing-pins': flag('first drop pins whose disk is missing'),
    'dry-run': flag('say what would be removed; remove nothing'),
  },
  operandCount: [0, 0],
  async run(cache, values) {
    const olderThan = values['older-than'];
    const olderThanMs = olderThan === undefined ? undefined : parseDuration(olderThan);
    if (olderThan !== undefined && olderThanMs === undefined)
      throw new UsageError(`invalid duration '${olderThan}' (e.g. 30d, 12h, 45m)`);
    const maxSize =
      values['max-size'] === undefined ? undefined : parseSize(values['max-size'], 'max size');
    const result = await cache.prune({
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
  },
});

const unpinCommand = cacheCommand({
  synopsis: 'diskpipe cache unpin PATH',
  summary: [
    'forgets that the disk at PATH uses an entry (pins are never dropped otherwise;',
    'a pin whose disk is missing is shown as unverified and still counts)',
  ],
  operandCount: [1, 1],
  async run(cache, _values, [path]) {
    for (const digest of await cache.unpin(path!)) print(`unpinned ${path} from ${digest}`);
    return 0;
  },
});

export const cache = defineGroup({
  name: 'cache',
  summary:
    'Lists and maintains the image cache (default $XDG_CACHE_HOME/diskpipe; --cache-dir or DISKPIPE_CACHE).',
  subcommands: [list, show, remove, unpinCommand, pruneCommand, cacheVerify],
});
