import { UsageError } from '../../errors.js';
import { isValidClusterSize } from '../../formats/qcow2/writer/index.js';
import { openImage } from '../../open.js';
import {
  type MeasureOptions,
  type MeasureResult,
  measure as measureImage,
} from '../../ops/measure.js';
import {
  type Command,
  IMAGE_OPTIONS,
  openOptions,
  parse,
  parseSize,
  positionals,
  print,
} from '../common.js';

const SYNOPSIS = 'diskpipe measure [-O FMT] [-o OPTS] [--json] (--size SIZE | IMAGE)';

export const measure: Command = {
  name: 'measure',
  synopsis: SYNOPSIS,
  help: [
    'Prints the space a new image needs, the same figures as qemu-img measure:',
    '"required size" (the clusters that hold data, zero ranges skipped, plus metadata) and',
    '"fully allocated size"; for -O qcow2 from a qcow2 v3 IMAGE also "bitmaps size".',
    '  -O raw|qcow2     format of the image to measure for (default raw)',
    '  -o OPTS          qcow2 options: cluster_size=SIZE, refcount_bits=N,',
    '                   extended_l2=on|off, compat=0.10|1.1',
    '  --size SIZE      measure a new empty image of SIZE bytes instead of IMAGE',
    '  --json           print {"bitmaps"?, "required", "fully-allocated"} as',
    '                   qemu-img measure --output=json',
    '  -f FMT           format of IMAGE (default: probed)',
  ].join('\n'),
  async run(argv) {
    const { values, positionals: args } = parse(argv, {
      ...IMAGE_OPTIONS,
      'output-format': { type: 'string', short: 'O' },
      options: { type: 'string', short: 'o', multiple: true },
      size: { type: 'string' },
      json: { type: 'boolean' },
    });
    const list = positionals(args, 0, 1, SYNOPSIS);
    const format = values['output-format'] ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      throw new UsageError(`cannot measure for '${format}' images (raw or qcow2)`);
    }
    const opts: MeasureOptions = { format, ...parseOptions(values.options ?? [], format) };
    let result: MeasureResult;
    if (values.size !== undefined) {
      if (list.length > 0) throw new UsageError('--size SIZE cannot be used together with IMAGE');
      result = await measureImage(parseSize(values.size), opts);
    } else {
      if (list.length === 0) throw new UsageError('either --size SIZE or IMAGE must be given');
      const image = await openImage(list[0]!, openOptions(values));
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
};

/** `-o key=value,…` (repeatable), the qcow2 creation options that change the figures. */
function parseOptions(list: string[], format: string): Omit<MeasureOptions, 'format'> {
  const out: Omit<MeasureOptions, 'format'> = {};
  for (const item of list.flatMap((o) => o.split(',')).filter((o) => o !== '')) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const value = eq < 0 ? '' : item.slice(eq + 1);
    if (format === 'raw') throw new UsageError(`raw images take no option '${key}'`);
    if (key === 'cluster_size') {
      const cs = parseSize(value, 'cluster size');
      if (!isValidClusterSize(cs)) {
        throw new UsageError('cluster size must be a power of two between 512 and 2M');
      }
      out.clusterSize = cs;
    } else if (key === 'refcount_bits') {
      const bits = Number(value);
      if (![1, 2, 4, 8, 16, 32, 64].includes(bits)) {
        throw new UsageError('refcount_bits must be a power of two from 1 to 64');
      }
      out.refcountBits = bits;
    } else if (key === 'extended_l2') {
      if (value !== 'on' && value !== 'off') throw new UsageError('extended_l2 is on or off');
      out.extendedL2 = value === 'on';
    } else if (key === 'compat') {
      if (value === '0.10' || value === 'v2') out.compat = '0.10';
      else if (value === '1.1' || value === 'v3') out.compat = '1.1';
      else throw new UsageError(`compat is 0.10 or 1.1, not '${value}'`);
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
