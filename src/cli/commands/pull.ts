import { openCache, pauseForTests } from '../cache-object.js';
import { defineCommand } from '../command.js';
import { httpOptions, humanSize, parseSize, print } from '../common.js';
import { flag, value } from '../options.js';
import { PhaseProgress } from '../phase-progress.js';
import { CACHE_DIR_OPTION, CACHED_SPARSIFY_OPTION, HTTP_OPTIONS } from '../shared-options.js';

export const pull = defineCommand({
  synopsis:
    'diskpipe pull [--digest ALG:HEX] [--offline] [--max-download SIZE] [--min-rate SIZE] [--min-rate-window SEC] [--ca-cert FILE] [--insecure] [--sparsify] [--json] [-p] [--cache-dir DIR] URL|FILE',
  summary: [
    'Downloads an image once into the cache, converted once to a sparse raw file stored under its',
    'content digest (blkhash). Compressed (.xz .gz .zst .bz2) and archived (.ova .tar) images are',
    'unwrapped on the fly; any format diskpipe reads is converted. Pulled images are untrusted.',
  ],
  options: {
    digest: value('ALG:HEX', 'verify the download (sha256 or sha512) while it streams'),
    offline: flag('use the cache only; fail if the image is not there'),
    ...CACHED_SPARSIFY_OPTION,
    'max-download': value('SIZE', [
      'largest download (default: a known length must fit in the',
      "cache's free space; without a length, 64G)",
    ]),
    ...HTTP_OPTIONS,
    json: flag('print the cache record (camelCase JSON)'),
    progress: flag(
      [
        'progress on stderr (terminal only): one line per phase (downloading,',
        'converting; shared while they overlap) with bytes, rate over the last',
        '5 s and ETA',
      ],
      { short: 'p' },
    ),
    ...CACHE_DIR_OPTION,
  },
  notes: [
    'A second pull of the same URL revalidates with a conditional request and downloads nothing',
    'when the file is unchanged (a server without ETag or Last-Modified cannot be asked: the',
    'file is downloaded again, with a note); an interrupted download resumes with a Range request.',
  ],
  column: 20,
  operandCount: [1, 1],
  async run(values, [spec]) {
    const bar = new PhaseProgress({ enabled: values.progress ?? false });
    const limits =
      values['max-download'] !== undefined
        ? { maxDownload: parseSize(values['max-download'], '--max-download') }
        : {};
    const http = { limits, client: httpOptions(values) };
    const result = await openCache(values['cache-dir'], { http, announceWaits: true })
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
});
