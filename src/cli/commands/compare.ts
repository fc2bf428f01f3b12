import { openImage } from '../../open.js';
import { compareImages } from '../../ops/compare.js';
import { defineCommand } from '../command.js';
import { openOptions, print } from '../common.js';
import { flag, value } from '../options.js';
import { ProgressBar } from '../progress.js';
import { PROGRESS_OPTION, READ_OPTIONS } from '../shared-options.js';

export const compare = defineCommand({
  synopsis: 'diskpipe compare [--strict] [-p] A B',
  summary: [
    'Says whether two images hold the same guest-visible bytes, whatever their formats.',
    'Prints "Images are identical." (exit 0) or "Content mismatch at offset N!" (exit 1),',
    'with N the start of the first differing 512-byte sector, as qemu-img compare prints.',
    'Images of different sizes are equal if the longer one reads as zeroes past the',
    'shorter one\'s end ("Warning: Image size mismatch!" is printed first).',
  ],
  options: {
    strict: flag('images of different sizes differ ("Strict mode: Image size mismatch!")', {
      short: 's',
      label: '-s, --strict',
    }),
    ...PROGRESS_OPTION,
    format: value('FMT', 'format of A (default: probed)', { short: 'f' }),
    'format-b': value('FMT', 'format of B (default: probed)', { short: 'F' }),
    ...READ_OPTIONS,
  },
  column: 17,
  operandCount: [2, 2],
  async run(values, [pathA, pathB]) {
    const a = await openImage(pathA!, openOptions(values));
    try {
      const b = await openImage(pathB!, openOptions({ ...values, format: values['format-b'] }));
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
});
