import { oneOf, UsageError } from '../../errors.js';
import { openCache, pauseForTests } from '../cache-object.js';
import { defineCommand, defineGroup } from '../command.js';
import { httpOptions, humanSize, parseSize, print } from '../common.js';
import { flag, value } from '../options.js';
import { PhaseProgress } from '../phase-progress.js';
import { CACHE_DIR_OPTION, CACHED_SPARSIFY_OPTION, HTTP_OPTIONS } from '../shared-options.js';

const SYNOPSIS =
  'diskpipe disk create --from URL|REF [--format raw|qcow2] [--size SIZE] [--force] [--offline] [--sparsify] [--ca-cert FILE] [--insecure] [--json] [-p] DEST';

const create = defineCommand({
  synopsis: SYNOPSIS,
  summary: 'Gives a VM its own disk from a cached image (pulled first if needed), in milliseconds:',
  options: {
    from: value('URL|REF', 'a URL (pulled if not cached) or a content digest (>= 8 hex digits)'),
    format: value('raw|qcow2', [
      'raw (the default): a reflink clone of the cached raw file (a sparse copy',
      'where the filesystem has no reflink); qcow2: a qcow2 overlay whose backing',
      'file is the cached raw file; the entry is pinned: cache rm/prune refuse to',
      'delete it while DEST exists',
    ]),
    size: value('SIZE', 'grow the disk to SIZE (K/M/G/T suffixes)'),
    force: flag([
      'replace an existing DEST (a regular file only; never a device, FIFO or',
      'directory); without it an existing DEST is refused (exit 2)',
    ]),
    offline: flag('use the cache only; never download'),
    ...CACHED_SPARSIFY_OPTION,
    ...HTTP_OPTIONS,
    json: flag('print the result as camelCase JSON'),
    progress: flag('progress of the pull on stderr (terminal only), as pull -p', { short: 'p' }),
    ...CACHE_DIR_OPTION,
  },
  column: 20,
  operandCount: [1, 1],
  async run(values, [dest]) {
    if (!values.from) throw new UsageError(`--from is required; usage: ${SYNOPSIS}`);
    const format = oneOf('--format', values.format ?? 'raw', ['raw', 'qcow2'] as const);
    const started = performance.now();
    const bar = new PhaseProgress({ enabled: values.progress ?? false });
    const r = await openCache(values['cache-dir'], { http: { client: httpOptions(values) } })
      .createDisk(values.from, dest!, {
        onProgress: pauseForTests(bar.report),
        format,
        size: values.size === undefined ? undefined : parseSize(values.size),
        offline: values.offline,
        sparsify: values.sparsify,
        force: values.force,
      })
      .finally(() => bar.finish());
    const ms = performance.now() - started;
    if (values.json) {
      print(JSON.stringify({ ...r, milliseconds: Math.round(ms) }, null, 2));
      return 0;
    }
    print(
      `${r.path}: ${r.format} ${r.strategy} of ${r.contentDigest.slice(0, 12)}, ${humanSize(r.virtualSize)} virtual, ${humanSize(r.bytesWritten)} written, ${humanSize(r.allocatedSize)} allocated (${ms.toFixed(0)} ms)`,
    );
    return 0;
  },
});

export const disk = defineGroup({ name: 'disk', summary: create.summary, subcommands: [create] });
