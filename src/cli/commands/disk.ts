import { UsageError } from '../../errors.js';
import { openCache, pauseForTests } from '../cache-object.js';
import { type Command, humanSize, parse, parseSize, positionals, print } from '../common.js';
import { PhaseProgress } from '../phase-progress.js';

const SYNOPSIS =
  'diskpipe disk create --from URL|REF [--format raw|qcow2] [--size SIZE] [--force] [--offline] [--sparsify] [--json] [-p] DEST';

export const disk: Command = {
  name: 'disk',
  synopsis: SYNOPSIS,
  help: [
    'Gives a VM its own disk from a cached image (pulled first if needed), in milliseconds:',
    '  --from URL|REF    a URL (pulled if not cached) or a content digest (>= 8 hex digits)',
    '  --format raw      a reflink clone of the cached raw file (a sparse copy where the',
    '                    filesystem has no reflink); the default',
    '  --format qcow2    a qcow2 overlay whose backing file is the cached raw file; the entry',
    '                    is pinned: cache rm/prune refuse to delete it while DEST exists',
    '  --size SIZE       grow the disk to SIZE (K/M/G/T suffixes)',
    '  --force           replace an existing DEST (a regular file only; never a device, FIFO or',
    '                    directory); without it an existing DEST is refused (exit 2)',
    '  --offline         use the cache only; never download',
    '  --sparsify        blocks the guest filesystems mark free are stored as zeroes (see',
    '                    convert --sparsify); recorded beside the plain variant',
    '  --json            print the result as camelCase JSON',
    '  -p                progress of the pull on stderr (terminal only), as pull -p',
  ].join('\n'),
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== 'create') throw new UsageError(`usage: ${SYNOPSIS}`);
    const { values, positionals: args } = parse(rest, {
      from: { type: 'string' },
      format: { type: 'string' },
      size: { type: 'string' },
      offline: { type: 'boolean' },
      sparsify: { type: 'boolean' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
      progress: { type: 'boolean', short: 'p' },
      'cache-dir': { type: 'string' },
    });
    const [dest] = positionals(args, 1, 1, SYNOPSIS);
    if (!values.from) throw new UsageError(`--from is required; usage: ${SYNOPSIS}`);
    const format = values.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2')
      throw new UsageError(`--format must be raw or qcow2, not '${format}'`);
    const started = performance.now();
    const bar = new PhaseProgress({ enabled: values.progress ?? false });
    const r = await openCache(values['cache-dir'])
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
};
