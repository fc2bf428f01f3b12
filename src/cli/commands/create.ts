import { type OutputFormat, parseFormatOptions } from '../../formats/writers.js';
import { type CreateOptions, createImage } from '../../ops/create.js';
import { defineCommand } from '../command.js';
import { openOptions, parseClusterSize, parseSize, print } from '../common.js';
import { list, value } from '../options.js';
import { BACKING_FORMAT_OPTION, CLUSTER_SIZE_OPTION, READ_OPTIONS } from '../shared-options.js';

export const create = defineCommand({
  synopsis:
    'diskpipe create [-f raw|qcow2|vmdk|vhdx|vpc|vdi] [-o OPTS] [-b BACKING [-F FMT]] IMAGE [SIZE]',
  summary: [
    'Creates a sparse raw image, an empty qcow2, vmdk, vhdx, vpc or vdi image, or a qcow2',
    'overlay on BACKING.',
    'IMAGE is written under a temporary name and renamed into place (an existing file is',
    'replaced, as qemu-img does). A DST that is not a regular file (device, FIFO, directory)',
    'is refused.',
  ],
  options: {
    format: value(
      'FMT',
      ['image format: raw, qcow2, vmdk, vhdx, vpc (VHD), vdi (default', 'qcow2 with -b, else raw)'],
      { short: 'f' },
    ),
    options: list(
      'KEY=VALUE,...',
      [
        'format options as for convert (vmdk subformat, vpc subformat and',
        'force_size, vhdx block_size, qcow2 cluster_size); repeatable',
      ],
      { short: 'o' },
    ),
    backing: value(
      'BACKING',
      [
        'backing file, stored as given (a relative path is relative to',
        "IMAGE's directory); SIZE defaults to its size",
      ],
      { short: 'b' },
    ),
    ...BACKING_FORMAT_OPTION,
    ...CLUSTER_SIZE_OPTION,
    ...READ_OPTIONS,
  },
  operands: { SIZE: 'bytes, or a number with K, M, G or T (powers of 1024)' },
  column: 23,
  operandCount: [1, 2],
  async run(values, operands) {
    const [path, sizeText] = operands as [string, string | undefined];
    const opts: CreateOptions = { trust: openOptions({ ...values, format: undefined }) };
    if (values.format !== undefined) {
      opts.format = values.format as OutputFormat; // checked by createImage
    }
    opts.formatOptions = parseFormatOptions(values.options?.join(','));
    if (values.backing !== undefined) opts.backing = values.backing;
    if (values['backing-format'] !== undefined) opts.backingFormat = values['backing-format'];
    if (sizeText !== undefined) opts.size = parseSize(sizeText);
    if (values['cluster-size'] !== undefined)
      opts.clusterSize = parseClusterSize(values['cluster-size']);
    const r = await createImage(path, opts);
    const parts = [`Formatting '${path}', fmt=${r.format}`, `size=${r.size}`];
    if (r.backing) parts.push(`backing_file=${r.backing.file}`, `backing_fmt=${r.backing.format}`);
    print(parts.join(' '));
    return 0;
  },
});
