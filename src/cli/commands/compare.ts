import { openImage } from '../../open.js';
import { compareImages } from '../../ops/compare.js';
import { type Command, IMAGE_OPTIONS, openOptions, parse, positionals, print } from '../common.js';
import { ProgressBar } from '../progress.js';

const SYNOPSIS = 'diskpipe compare [--strict] [-p] A B';

export const compare: Command = {
  name: 'compare',
  synopsis: SYNOPSIS,
  help: [
    'Says whether two images hold the same guest-visible bytes, whatever their formats.',
    'Prints "Images are identical." (exit 0) or "Content mismatch at offset N!" (exit 1),',
    'with N the start of the first differing 512-byte sector, as qemu-img compare prints.',
    'Images of different sizes are equal if the longer one reads as zeroes past the',
    'shorter one\'s end ("Warning: Image size mismatch!" is printed first).',
    '  -s, --strict   images of different sizes differ ("Strict mode: Image size mismatch!")',
    '  -p             progress bar on stderr (terminal only)',
    '  -f FMT         format of A (default: probed)',
    '  -F FMT         format of B (default: probed)',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      ...IMAGE_OPTIONS,
      'format-b': { type: 'string', short: 'F' },
      strict: { type: 'boolean', short: 's' },
      progress: { type: 'boolean', short: 'p' },
    });
    const [pathA, pathB] = positionals(args, 2, 2, SYNOPSIS) as [string, string];
    const a = await openImage(pathA, openOptions(values));
    try {
      const b = await openImage(pathB, openOptions({ ...values, format: values['format-b'] }));
      const bar = new ProgressBar({ enabled: values.progress === true });
      try {
        const r = await compareImages(a, b, {
          strict: values.strict === true,
          onProgress: bar.report,
        });
        bar.finish();
        if (!r.identical && r.reason === 'size') {
          print('Strict mode: Image size mismatch!');
          return 1;
        }
        // qemu-img warns about the size only once the common part is known to be equal.
        const commonEqual = r.identical || r.offset >= Math.min(a.size, b.size);
        if (r.sizeMismatch && commonEqual) print('Warning: Image size mismatch!');
        if (r.identical) {
          print('Images are identical.');
          return 0;
        }
        print(`Content mismatch at offset ${Math.floor(r.offset / 512) * 512}!`);
        return 1;
      } finally {
        bar.finish();
        await b.close();
      }
    } finally {
      await a.close();
    }
  },
};
