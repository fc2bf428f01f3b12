import { openCache, pauseForTests } from '../cache-object.js';
import {
  type Command,
  humanSize,
  parse,
  parseSize,
  positionals,
  print,
  RATE_OPTIONS,
  rateOptions,
} from '../common.js';
import { PhaseProgress } from '../phase-progress.js';

const SYNOPSIS =
  'diskpipe pull [--digest ALG:HEX] [--offline] [--max-download SIZE] [--min-rate SIZE] [--min-rate-window SEC] [--sparsify] [--json] [-p] [--cache-dir DIR] URL|FILE';

export const pull: Command = {
  name: 'pull',
  synopsis: SYNOPSIS,
  help: [
    'Downloads an image once into the cache, converted once to a sparse raw file stored under its',
    'content digest (blkhash). Compressed (.xz .gz .zst .bz2) and archived (.ova .tar) images are',
    'unwrapped on the fly; any format diskpipe reads is converted. Pulled images are untrusted.',
    '  --digest ALG:HEX  verify the download (sha256 or sha512) while it streams',
    '  --offline         use the cache only; fail if the image is not there',
    '  --sparsify        blocks the guest filesystems mark free are stored as zeroes (see',
    '                    convert --sparsify); recorded beside the plain variant',
    '  --max-download SIZE  largest download (default: a known length must fit in the',
    "                    cache's free space; without a length, 64G)",
    '  --min-rate SIZE   fail a download slower than SIZE bytes/s (default 1K; 0: never)...',
    '  --min-rate-window SEC  ...averaged over SEC seconds (default 30)',
    '  --json            print the cache record (camelCase JSON)',
    '  -p                progress on stderr (terminal only): one line per phase (downloading,',
    '                    converting; shared while they overlap) with bytes, rate over the last',
    '                    5 s and ETA',
    '  --cache-dir DIR   cache location (default $DISKPIPE_CACHE, else $XDG_CACHE_HOME/diskpipe)',
    'A second pull of the same URL revalidates with a conditional request and downloads nothing',
    'when the file is unchanged; an interrupted download resumes with a Range request.',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      digest: { type: 'string' },
      offline: { type: 'boolean' },
      sparsify: { type: 'boolean' },
      json: { type: 'boolean' },
      progress: { type: 'boolean', short: 'p' },
      'cache-dir': { type: 'string' },
      'max-download': { type: 'string' },
      ...RATE_OPTIONS,
    });
    const [spec] = positionals(args, 1, 1, SYNOPSIS);
    const bar = new PhaseProgress({ enabled: values.progress ?? false });
    const limits = {
      ...rateOptions(values),
      ...(values['max-download'] !== undefined
        ? { maxDownload: parseSize(values['max-download'], '--max-download') }
        : {}),
    };
    const result = await openCache(values['cache-dir'], { http: { limits }, announceWaits: true })
      .pull(spec!, {
        digest: values.digest,
        offline: values.offline,
        sparsify: values.sparsify,
        onProgress: pauseForTests(bar.report),
      })
      .finally(() => bar.finish());
    const r = result.record;
    if (values.json) {
      print(
        JSON.stringify(
          {
            ...r,
            path: result.path,
            hit: result.hit,
            downloaded: result.downloaded,
            written: result.written,
          },
          null,
          2,
        ),
      );
      return 0;
    }
    const how = result.hit
      ? 'already cached'
      : result.url.startsWith('file:')
        ? 'converted from a local file'
        : `downloaded ${humanSize(result.downloaded)}`;
    print(
      `${r.contentDigest}  ${result.path}\n${how}; ${r.sourceFormat}${r.compression ? ` (${r.compression})` : ''}, ${humanSize(r.virtualSize)} virtual, ${humanSize(r.allocatedSize)} on disk`,
    );
    return 0;
  },
};
