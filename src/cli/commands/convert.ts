import { UsageError } from '../../errors.js';
import { parseFormatOptions } from '../../formats/writers.js';
import type { Image } from '../../image/types.js';
import { openImage } from '../../open.js';
import { openStream } from '../../open-stream.js';
import {
  type ConvertOptions,
  canConvertStream,
  convertImage,
  convertStream,
  type OutputFormat,
} from '../../ops/convert.js';
import { defineCommand } from '../command.js';
import { noticeUnverified, openOptions, parseClusterSize, parseSize } from '../common.js';
import { flag, list, value } from '../options.js';
import { ProgressBar } from '../progress.js';
import {
  BACKING_FORMAT_OPTION,
  CLUSTER_SIZE_OPTION,
  PROGRESS_OPTION,
  READ_OPTIONS,
} from '../shared-options.js';

export const convert = defineCommand({
  synopsis:
    'diskpipe convert [-f FMT] [-O raw|qcow2|vmdk|vhdx|vpc|vdi] [-o OPTS] [-c] [--compression deflate|zstd] [--cluster-size SIZE] [-B BACKING] [--target-is-zero] [-n] [-p] [--sparsify] SRC DST',
  summary: [
    'Copies SRC into a new image DST without reading or writing zeroes. DST is written under a',
    'temporary name and renamed when complete; a raw DST is sparse and has the exact size.',
    'A block device DST is written in place (opened exclusively, size checked, zero ranges',
    'zeroed with BLKZEROOUT, flushed); other non-regular DSTs (FIFO, directory...) are refused.',
  ],
  options: {
    format: value('FMT', 'source format (default: probed)', { short: 'f' }),
    'output-format': value(
      'FMT',
      'output format: raw (default), qcow2, vmdk, vhdx, vpc (VHD), vdi',
      {
        short: 'O',
      },
    ),
    options: list(
      'KEY=VALUE,...',
      [
        'format options, as qemu-img names them (repeatable):',
        '  vmdk: subformat=monolithicSparse (default) | streamOptimized',
        '  vpc:  subformat=dynamic (default) | fixed; force_size=on keeps',
        '        the exact size (else rounded up to the CHS geometry)',
        '  vhdx: block_size=SIZE (default as qemu-img: 8M to 64M)',
        '  qcow2: cluster_size=SIZE',
      ],
      { short: 'o' },
    ),
    compress: flag('compress qcow2 clusters', { short: 'c' }),
    compression: value('TYPE', 'deflate (default) or zstd; implies -c'),
    ...CLUSTER_SIZE_OPTION,
    backing: value(
      'BACKING',
      [
        'qcow2 overlay on BACKING (stored as given, relative to DST);',
        'only clusters that differ from BACKING are written',
      ],
      { short: 'B' },
    ),
    ...BACKING_FORMAT_OPTION,
    existing: flag('write into the existing image DST in place (no create/rename)', {
      short: 'n',
    }),
    'target-is-zero': flag([
      'with -n or a block device: DST already reads as zeroes; skip',
      'zero ranges',
    ]),
    ...PROGRESS_OPTION,
    sparsify: flag([
      'drop blocks the guest filesystems mark free (ext2/3/4, FAT, XFS, swap;',
      'see README); they read as zeroes in DST',
    ]),
    parallel: value('N', 'requests in flight (1-64, default 8)', { short: 'm' }),
    'request-size': value('SIZE', 'read request size (64K to 8M, default 2M); memory N x SIZE'),
    sparse: value('SIZE', 'zero detection granularity in data (default 4K; 0: off)', {
      short: 'S',
    }),
    'copy-range': flag([
      'raw to raw: move data extents with copy_file_range (faster; the',
      'kernel may share blocks) instead of reading them; zero blocks',
      'inside allocated data are then copied, not turned into holes',
    ]),
    'no-copy-range': flag([
      'raw to raw: write the data read, never copy_file_range (the',
      'default: data is read for zero blocks, and the rest written)',
    ]),
    sync: flag([
      'fdatasync DST before it is renamed into place (or, with -n, at',
      'the end); qemu-img convert does not flush by default either',
    ]),
    unordered: flag('accepted for qemu-img compatibility (writes are always unordered)', {
      short: 'W',
    }),
    ...READ_OPTIONS,
  },
  operands: {
    'DST -': [
      'write raw bytes to stdout, in order (or, with -O vmdk -o',
      'subformat=streamOptimized, the vmdk itself)',
    ],
  },
  column: 23,
  operandCount: [2, 2],
  async run(values, operands) {
    const [src, dst] = operands as [string, string];
    const opts: ConvertOptions = {
      format: (values['output-format'] ?? 'raw') as OutputFormat,
      formatOptions: parseFormatOptions(values.options?.join(',')),
      existing: values.existing === true,
      targetIsZero: values['target-is-zero'] === true,
      trust: openOptions({ ...values, format: undefined }),
    };
    if (values.compression !== undefined) {
      if (values.compression !== 'deflate' && values.compression !== 'zstd') {
        throw new UsageError(`unknown compression '${values.compression}' (deflate or zstd)`);
      }
      opts.compression = values.compression;
      opts.compress = true;
    }
    if (values.compress) opts.compress = true;
    if (values['cluster-size'] !== undefined)
      opts.clusterSize = parseClusterSize(values['cluster-size']);
    if (values.backing !== undefined) opts.backing = values.backing;
    if (values['backing-format'] !== undefined) opts.backingFormat = values['backing-format'];
    if (values.parallel !== undefined) opts.inFlight = Number(values.parallel);
    if (values.parallel !== undefined && !/^\d+$/.test(values.parallel)) {
      throw new UsageError(`invalid -m '${values.parallel}'`);
    }
    if (values['request-size'] !== undefined) {
      opts.requestSize = parseSize(values['request-size'], 'request size');
    }
    if (values.sparse !== undefined) opts.sparseSize = parseSize(values.sparse, 'sparse size');
    if (values['no-copy-range']) opts.copyRange = false;
    else if (values['copy-range']) opts.copyRange = true;
    if (values.sync) opts.sync = true;
    // A command has no other work for its event loop: write without thread-pool round trips.
    opts.blockingWrites = true;
    const bar = new ProgressBar({ enabled: values.progress === true });
    opts.onProgress = bar.report;
    // Raw content inside a compressed wrapper streams into a new raw file in one pass;
    // sparsify needs random access, so it opens the image (staged if it must be).
    const opened =
      !values.sparsify && (await canConvertStream(dst, opts))
        ? await openStream(src, noticeUnverified(openOptions(values)))
        : {
            kind: 'image' as const,
            image: await openImage(src, noticeUnverified(openOptions(values))).then(
              async (i): Promise<Image> =>
                values.sparsify ? (await import('../../filters/sparsify/index.js')).sparsify(i) : i,
            ),
          };
    try {
      if (opened.kind === 'stream') await convertStream(opened.stream, dst, opts);
      else await convertImage(opened.image, dst, opts);
    } finally {
      bar.finish();
      await (opened.kind === 'stream' ? opened.stream : opened.image).close();
    }
    return 0;
  },
});
