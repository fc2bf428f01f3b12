import { UsageError } from '../../errors.js';
import { sparsify } from '../../filters/sparsify/index.js';
import { isValidClusterSize } from '../../formats/qcow2/writer/index.js';
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
import {
  type Command,
  IMAGE_OPTIONS,
  openOptions,
  parse,
  parseSize,
  positionals,
} from '../common.js';
import { ProgressBar } from '../progress.js';

const SYNOPSIS =
  'diskpipe convert [-f FMT] [-O raw|qcow2|vmdk|vhdx|vpc|vdi] [-o OPTS] [-c] [--compression deflate|zstd] [--cluster-size SIZE] [-B BACKING] [--target-is-zero] [-n] [-p] [--sparsify] SRC DST';

export const convert: Command = {
  name: 'convert',
  synopsis: SYNOPSIS,
  help: [
    'Copies SRC into a new image DST without reading or writing zeroes. DST is written under a',
    'temporary name and renamed when complete; a raw DST is sparse and has the exact size.',
    'A block device DST is written in place (opened exclusively, size checked, zero ranges',
    'zeroed with BLKZEROOUT, flushed); other non-regular DSTs (FIFO, directory...) are refused.',
    '  -f FMT               source format (default: probed)',
    '  -O FMT               output format: raw (default), qcow2, vmdk, vhdx, vpc (VHD), vdi',
    '  -o KEY=VALUE,...     format options, as qemu-img names them (repeatable):',
    '                         vmdk: subformat=monolithicSparse (default) | streamOptimized',
    '                         vpc:  subformat=dynamic (default) | fixed; force_size=on keeps',
    '                               the exact size (else rounded up to the CHS geometry)',
    '                         vhdx: block_size=SIZE (default as qemu-img: 8M to 64M)',
    '                         qcow2: cluster_size=SIZE',
    '  -c                   compress qcow2 clusters',
    '  --compression TYPE   deflate (default) or zstd; implies -c',
    '  --cluster-size SIZE  qcow2 cluster size, 512 to 2M (default 64K)',
    '  -B BACKING           qcow2 overlay on BACKING (stored as given, relative to DST);',
    '                       only clusters that differ from BACKING are written',
    '  -F FMT               format of BACKING (default: probed)',
    '  -n                   write into the existing image DST in place (no create/rename)',
    '  --target-is-zero     with -n or a block device: DST already reads as zeroes; skip',
    '                       zero ranges',
    '  -p                   progress bar on stderr (terminal only)',
    '  --sparsify           drop blocks the guest filesystems mark free (ext2/3/4, FAT, XFS, swap;',
    '                       see README); they read as zeroes in DST',
    '  -m N                 requests in flight (1-64, default 8)',
    '  --request-size SIZE  read request size (64K to 8M, default 2M); memory N x SIZE',
    '  -S SIZE              zero detection granularity in data (default 4K; 0: off)',
    '  --copy-range         raw to raw: move data extents with copy_file_range (faster; the',
    '                       kernel may share blocks) instead of reading them; zero blocks',
    '                       inside allocated data are then copied, not turned into holes',
    '  --no-copy-range      read and write data (the default)',
    '  --sync               fdatasync DST before it is renamed into place (or, with -n, at',
    '                       the end); qemu-img convert does not flush by default either',
    '  -W                   accepted for qemu-img compatibility (writes are always unordered)',
    '  DST -                write raw bytes to stdout, in order (or, with -O vmdk -o',
    '                       subformat=streamOptimized, the vmdk itself)',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      ...IMAGE_OPTIONS,
      'output-format': { type: 'string', short: 'O' },
      options: { type: 'string', short: 'o', multiple: true },
      compress: { type: 'boolean', short: 'c' },
      compression: { type: 'string' },
      'cluster-size': { type: 'string' },
      backing: { type: 'string', short: 'B' },
      'backing-format': { type: 'string', short: 'F' },
      'target-is-zero': { type: 'boolean' },
      existing: { type: 'boolean', short: 'n' },
      progress: { type: 'boolean', short: 'p' },
      parallel: { type: 'string', short: 'm' },
      'request-size': { type: 'string' },
      sparse: { type: 'string', short: 'S' },
      'no-copy-range': { type: 'boolean' },
      'copy-range': { type: 'boolean' },
      sync: { type: 'boolean' },
      unordered: { type: 'boolean', short: 'W' },
      sparsify: { type: 'boolean' },
    });
    const [src, dst] = positionals(args, 2, 2, SYNOPSIS) as [string, string];
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
    if (values['cluster-size'] !== undefined) {
      const cs = parseSize(values['cluster-size'], 'cluster size');
      if (!isValidClusterSize(cs)) {
        throw new UsageError('cluster size must be a power of two between 512 and 2M');
      }
      opts.clusterSize = cs;
    }
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
    if (values['copy-range'] && !values['no-copy-range']) opts.copyRange = true;
    if (values.sync) opts.sync = true;
    const bar = new ProgressBar({ enabled: values.progress === true });
    opts.onProgress = bar.report;
    // Raw content inside a compressed wrapper streams into a new raw file in one pass;
    // sparsify needs random access, so it opens the image (staged if it must be).
    const opened =
      !values.sparsify && (await canConvertStream(dst, opts))
        ? await openStream(src, openOptions(values))
        : {
            kind: 'image' as const,
            image: await openImage(src, openOptions(values)).then((i): Image | Promise<Image> =>
              values.sparsify ? sparsify(i) : i,
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
};
