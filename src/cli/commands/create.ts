import { UsageError } from '../../errors.js';
import { isValidClusterSize } from '../../formats/qcow2/writer/index.js';
import { type OutputFormat, parseFormatOptions } from '../../formats/writers.js';
import { type CreateOptions, createImage } from '../../ops/create.js';
import {
  type Command,
  IMAGE_OPTIONS,
  openOptions,
  parse,
  parseSize,
  positionals,
  print,
} from '../common.js';

const SYNOPSIS =
  'diskpipe create [-f raw|qcow2|vmdk|vhdx|vpc|vdi] [-o OPTS] [-b BACKING [-F FMT]] IMAGE [SIZE]';

export const create: Command = {
  name: 'create',
  synopsis: SYNOPSIS,
  help: [
    'Creates a sparse raw image, an empty qcow2, vmdk, vhdx, vpc or vdi image, or a qcow2',
    'overlay on BACKING.',
    'IMAGE is written under a temporary name and renamed into place (an existing file is',
    'replaced, as qemu-img does). A DST that is not a regular file (device, FIFO, directory)',
    'is refused.',
    '  -f FMT               image format: raw, qcow2, vmdk, vhdx, vpc (VHD), vdi (default',
    '                       qcow2 with -b, else raw)',
    '  -o KEY=VALUE,...     format options as for convert (vmdk subformat, vpc subformat and',
    '                       force_size, vhdx block_size, qcow2 cluster_size); repeatable',
    '  -b BACKING           backing file, stored as given (a relative path is relative to',
    "                       IMAGE's directory); SIZE defaults to its size",
    '  -F FMT               format of BACKING (default: probed)',
    '  --cluster-size SIZE  qcow2 cluster size, 512 to 2M (default 64K)',
    '  SIZE                 bytes, or a number with K, M, G or T (powers of 1024)',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      ...IMAGE_OPTIONS,
      backing: { type: 'string', short: 'b' },
      'backing-format': { type: 'string', short: 'F' },
      'cluster-size': { type: 'string' },
      options: { type: 'string', short: 'o', multiple: true },
    });
    const [path, sizeText] = positionals(args, 1, 2, SYNOPSIS) as [string, string | undefined];
    const opts: CreateOptions = { trust: openOptions({ ...values, format: undefined }) };
    if (values.format !== undefined) {
      opts.format = values.format as OutputFormat; // checked by createImage
    }
    opts.formatOptions = parseFormatOptions(values.options?.join(','));
    if (values.backing !== undefined) opts.backing = values.backing;
    if (values['backing-format'] !== undefined) opts.backingFormat = values['backing-format'];
    if (sizeText !== undefined) opts.size = parseSize(sizeText);
    if (values['cluster-size'] !== undefined) {
      const cs = parseSize(values['cluster-size'], 'cluster size');
      if (!isValidClusterSize(cs)) {
        throw new UsageError('cluster size must be a power of two between 512 and 2M');
      }
      opts.clusterSize = cs;
    }
    const r = await createImage(path, opts);
    const parts = [`Formatting '${path}', fmt=${r.format}`, `size=${r.size}`];
    if (r.backing) parts.push(`backing_file=${r.backing.file}`, `backing_fmt=${r.backing.format}`);
    print(parts.join(' '));
    return 0;
  },
};
