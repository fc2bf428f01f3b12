import { UsageError } from '../../errors.js';
import { resizeImage, type SizeChange } from '../../ops/resize.js';
import { defineCommand } from '../command.js';
import { openOptions, parseSize, print } from '../common.js';
import { flag, value } from '../options.js';
import { trustOptions } from '../shared-options.js';

export const resize = defineCommand({
  synopsis: 'diskpipe resize [--shrink] [-f FMT] IMAGE [+|-]SIZE',
  summary: [
    'Changes the virtual size of a raw or qcow2 image in place, as qemu-img resize, and',
    'prints "Image resized.". A raw file is truncated to exactly SIZE bytes (qemu rounds a',
    "raw file's current size up to 512 bytes before adding +SIZE; diskpipe does not). A",
    'qcow2 image gets the new size in its header and a larger L1 table when it needs one;',
    'a crash midway can leak clusters but never corrupts the image.',
  ],
  options: {
    shrink: flag([
      'allow a smaller size (data past the new end is lost): raw files are cut;',
      'qcow2 clusters past the end are freed and the file loses its unused tail.',
      'Not yet for qcow2 images with internal snapshots or persistent bitmaps.',
    ]),
    format: value('FMT', 'raw or qcow2 (default: probed)', { short: 'f' }),
    ...trustOptions([
      "the trust rule for a qcow2 image's backing file,",
      'opened (read only) to check that growing does not expose its data',
    ]),
  },
  operands: {
    SIZE: [
      'new size; +SIZE / -SIZE change the current size (bytes, or a number',
      'with K, M, G or T). A qcow2 size must be a multiple of 512.',
    ],
  },
  column: 14,
  operandCount: [2, 2],
  // "-1G" is a size, not a flag (qemu-img needs "--" before it; both work here).
  rewrite(argv) {
    const size = argv.findIndex((a) => /^-\d/.test(a));
    if (size < 0) return argv;
    const rest = argv.filter((_, i) => i !== size);
    // After a "--" of the user's, everything is positional already.
    return [...rest, ...(rest.includes('--') ? [] : ['--']), argv[size]!];
  },
  async run(values, operands) {
    const [path, sizeText] = operands as [string, string];
    const sign = sizeText[0] === '+' || sizeText[0] === '-' ? sizeText[0] : '';
    const change: SizeChange = { sign, bytes: parseSize(sizeText.slice(sign.length)) };
    if (values.format !== undefined && values.format !== 'raw' && values.format !== 'qcow2') {
      throw new UsageError(`cannot resize '${values.format}' images (raw or qcow2)`);
    }
    await resizeImage(path, change, {
      ...(values.format !== undefined ? { format: values.format } : {}),
      shrink: values.shrink ?? false,
      trust: openOptions({ ...values, format: undefined }),
    });
    print('Image resized.');
    return 0;
  },
});
