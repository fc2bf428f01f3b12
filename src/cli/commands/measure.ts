import { UsageError } from '../../errors.js';
import { openImage } from '../../open.js';
import {
  type MeasureOptions,
  type MeasureResult,
  measure as measureImage,
} from '../../ops/measure.js';
import { defineCommand } from '../command.js';
import { openOptions, parseClusterSize, parseSize, print } from '../common.js';
import { flag, list, value } from '../options.js';
import { READ_OPTIONS } from '../shared-options.js';

export const measure = defineCommand({
  synopsis: 'diskpipe measure [-O FMT] [-o OPTS] [--json] (--size SIZE | IMAGE)',
  summary: [
    'Prints the space a new image needs, the same figures as qemu-img measure:',
    '"required size" (the clusters that hold data, zero ranges skipped, plus metadata) and',
    '"fully allocated size"; for -O qcow2 from a qcow2 v3 IMAGE also "bitmaps size".',
  ],
  options: {
    'output-format': value('raw|qcow2', 'format of the image to measure for (default raw)', {
      short: 'O',
    }),
    options: list(
      'OPTS',
      ['qcow2 options: cluster_size=SIZE, refcount_bits=N,', 'extended_l2=on|off, compat=0.10|1.1'],
      { short: 'o' },
    ),
    size: value('SIZE', 'measure a new empty image of SIZE bytes instead of IMAGE'),
    json: flag([
      'print {"bitmaps"?, "required", "fully-allocated"} as',
      'qemu-img measure --output=json',
    ]),
    format: value('FMT', 'format of IMAGE (default: probed)', { short: 'f' }),
    ...READ_OPTIONS,
  },
  column: 19,
  operandCount: [0, 1],
  async run(values, images) {
    const format = values['output-format'] ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      throw new UsageError(`cannot measure for '${format}' images (raw or qcow2)`);
    }
    const opts: MeasureOptions = { format, ...parseOptions(values.options ?? [], format) };
    let result: MeasureResult;
    if (values.size !== undefined) {
      if (images.length > 0) throw new UsageError('--size SIZE cannot be used together with IMAGE');
      result = await measureImage(parseSize(values.size), opts);
    } else {
      if (images.length === 0) throw new UsageError('either --size SIZE or IMAGE must be given');
      const image = await openImage(images[0]!, openOptions(values));
      try {
        result = await measureImage(image, opts);
      } finally {
        await image.close();
      }
    }
    if (values.json) {
      print(JSON.stringify(result, null, 4));
    } else {
      print(`required size: ${result.required}`);
      print(`fully allocated size: ${result['fully-allocated']}`);
      if (result.bitmaps !== undefined) print(`bitmaps size: ${result.bitmaps}`);
    }
    return 0;
  },
});

/** `-o key=value,…` (repeatable), the qcow2 creation options that change the figures. */
function parseOptions(given: string[], format: string): Omit<MeasureOptions, 'format'> {
  const out: Omit<MeasureOptions, 'format'> = {};
  for (const item of given.flatMap((o) => o.split(',')).filter((o) => o !== '')) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const setting = eq < 0 ? '' : item.slice(eq + 1);
    if (format === 'raw') throw new UsageError(`raw images take no option '${key}'`);
    if (key === 'cluster_size') {
      out.clusterSize = parseClusterSize(setting);
    } else if (key === 'refcount_bits') {
      const bits = Number(setting);
      if (![1, 2, 4, 8, 16, 32, 64].includes(bits)) {
        throw new UsageError('refcount_bits must be a power of two from 1 to 64');
      }
      out.refcountBits = bits;
    } else if (key === 'extended_l2') {
      if (setting !== 'on' && setting !== 'off') throw new UsageError('extended_l2 is on or off');
      out.extendedL2 = setting === 'on';
    } else if (key === 'compat') {
      if (setting === '0.10' || setting === 'v2') out.compat = '0.10';
      else if (setting === '1.1' || setting === 'v3') out.compat = '1.1';
      else throw new UsageError(`compat is 0.10 or 1.1, not '${setting}'`);
    } else {
      throw new UsageError(
        `unknown option '${key}' (cluster_size, refcount_bits, extended_l2, compat)`,
      );
    }
  }
  if (out.compat === '0.10' && (out.extendedL2 || (out.refcountBits ?? 16) !== 16)) {
    throw new UsageError('compat=0.10 images have 16-bit refcounts and no extended L2 entries');
  }
  return out;
}
