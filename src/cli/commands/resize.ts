import { UsageError } from '../../errors.js';
import { resizeImage, type SizeChange } from '../../ops/resize.js';
import { type Command, openOptions, parse, parseSize, positionals, print } from '../common.js';

const SYNOPSIS = 'diskpipe resize [--shrink] [-f FMT] IMAGE [+|-]SIZE';

export const resize: Command = {
  name: 'resize',
  synopsis: SYNOPSIS,
  help: [
    'Changes the virtual size of a raw or qcow2 image in place, as qemu-img resize, and',
    'prints "Image resized.". A raw file is truncated to exactly SIZE bytes (qemu rounds a',
    "raw file's current size up to 512 bytes before adding +SIZE; diskpipe does not). A",
    'qcow2 image gets the new size in its header and a larger L1 table when it needs one;',
    'a crash midway can leak clusters but never corrupts the image.',
    '  SIZE        new size; +SIZE / -SIZE change the current size (bytes, or a number',
    '              with K, M, G or T). A qcow2 size must be a multiple of 512.',
    '  --shrink    allow a smaller size (data past the new end is lost): raw files are cut;',
    '              qcow2 clusters past the end are freed and the file loses its unused tail.',
    '              Not yet for qcow2 images with internal snapshots or persistent bitmaps.',
    '  -f FMT      raw or qcow2 (default: probed)',
    "  --allow-backing DIR, --untrusted   the trust rule for a qcow2 image's backing file,",
    '              opened (read only) to check that growing does not expose its data',
  ].join('\n'),
  async run(argv) {
    // "-1G" is a size, not a flag (qemu-img needs "--" before it; both work here).
    const size = argv.findIndex((a) => /^-\d/.test(a));
    const rest = argv.filter((_, i) => i !== size);
    // After a "--" of the user's, everything is positional already.
    const args = size < 0 ? argv : [...rest, ...(rest.includes('--') ? [] : ['--']), argv[size]!];
    const { values, positionals: list } = parse(args, {
      format: { type: 'string', short: 'f' },
      shrink: { type: 'boolean' },
      untrusted: { type: 'boolean' },
      'allow-backing': { type: 'string', multiple: true },
      'cache-dir': { type: 'string' },
    });
    const [path, sizeText] = positionals(list, 2, 2, SYNOPSIS) as [string, string];
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
};
