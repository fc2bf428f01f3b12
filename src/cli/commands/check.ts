import { DiskpipeError, UsageError } from '../../errors.js';
import { type CheckResult, checkImage } from '../../ops/check.js';
import { type Command, defineCommand } from '../command.js';
import { openOptions, print } from '../common.js';
import { flag, value } from '../options.js';
import { READ_OPTIONS } from '../shared-options.js';

/** qemu-img check's exit statuses (an exception to diskpipe's usual 0/1/2). */
const CLEAN = 0;
const NOT_RUN = 1;
const CORRUPT = 2;
const LEAKS = 3;
const NO_CHECK = 63;

const checkCommand = defineCommand({
  synopsis: 'diskpipe check [-f FMT] [--json] IMAGE',
  summary: [
    'Checks the consistency of a qcow2 image without changing it: every cluster the',
    'metadata references is counted and compared with its stored refcount, COPIED flags,',
    'alignment and reserved bits are checked. Findings are printed on stderr; the counts',
    'and the summary (stdout) are those of qemu-img check.',
    'Exit status, exactly as qemu-img check (not the usual 0/1/2): 0 no errors, 1 the',
    'check could not run (usage errors included), 2 corruptions, 3 leaked clusters only,',
    '63 the format has no check (every format but qcow2).',
    'A tar/OVA member or a .xz/.gz/.zst/.bz2 file is checked as the image inside it',
    '(a compressed one is staged to a temporary file first); -f turns that off.',
  ],
  options: {
    json: flag('print qemu-img check --output=json fields', { label: '--json, --output=json' }),
    format: value('FMT', 'format of IMAGE (default: probed)', { short: 'f' }),
    repair: value(
      'leaks|all',
      'repairs (qemu-img check -r) are not implemented yet; they may come later',
      { short: 'r' },
    ),
    ...READ_OPTIONS,
  },
  column: 26,
  operandCount: [1, 1],
  run: (values, [spec]) => runCheck(spec!, values),
});

/** Errors, usage errors included, exit 1 ("could not run"), as qemu-img check does. */
export const check: Command = {
  ...checkCommand,
  async run(argv) {
    try {
      return await checkCommand.run(argv);
    } catch (err) {
      const debug = process.env.DISKPIPE_DEBUG === '1';
      const message =
        err instanceof DiskpipeError && !debug ? err.message : String((err as Error)?.stack ?? err);
      process.stderr.write(`diskpipe: ${message}\n`);
      return NOT_RUN;
    }
  },
};

async function runCheck(
  spec: string,
  values: Parameters<typeof openOptions>[0] & {
    json?: boolean | undefined;
    repair?: string | undefined;
  },
): Promise<number> {
  if (values.repair !== undefined) {
    throw new UsageError('check -r (repair) is not implemented yet; use qemu-img check -r');
  }
  const outcome = await checkImage(spec, values.format, openOptions(values));
  if (!outcome.result) {
    process.stderr.write(`diskpipe: ${outcome.format} images have no check (only qcow2 has)\n`);
    return NO_CHECK;
  }
  const r = outcome.result;
  for (const line of r.messages) process.stderr.write(`${line}\n`);
  for (const flag of r.marked) {
    process.stderr.write(
      `diskpipe: note: the image is marked ${flag} (${flag === 'corrupt' ? 'qemu will not open it for writing' : 'it was not closed cleanly'})\n`,
    );
  }
  if (values.json) print(JSON.stringify(checkJson(r, spec), null, 4));
  else print(human(r));
  if (r.checkErrors > 0) {
    process.stderr.write('diskpipe: check failed\n');
    return NOT_RUN;
  }
  return r.corruptions > 0 ? CORRUPT : r.leaks > 0 ? LEAKS : CLEAN;
}

/** qemu-img check --output=json: zero counts are left out, as qemu does. */
function checkJson(r: CheckResult, filename: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const optional = (key: string, n: number) => {
    if (n !== 0) out[key] = n;
  };
  optional('image-end-offset', r.imageEndOffset);
  optional('compressed-clusters', r.compressedClusters);
  optional('total-clusters', r.totalClusters);
  optional('corruptions', r.corruptions);
  out['check-errors'] = r.checkErrors;
  optional('leaks', r.leaks);
  optional('allocated-clusters', r.allocatedClusters);
  out.filename = filename;
  out.format = 'qcow2';
  optional('fragmented-clusters', r.fragmentedClusters);
  return out;
}

function human(r: CheckResult): string {
  const lines: string[] = [];
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) {
    lines.push('No errors were found on the image.');
  } else {
    if (r.corruptions) {
      lines.push(
        '',
        `${r.corruptions} errors were found on the image.`,
        'Data may be corrupted, or further writes to the image may corrupt it.',
      );
    }
    if (r.leaks) {
      lines.push(
        '',
        `${r.leaks} leaked clusters were found on the image.`,
        'This means waste of disk space, but no harm to data.',
      );
    }
    if (r.checkErrors) {
      lines.push('', `${r.checkErrors} internal errors have occurred during the check.`);
    }
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, of: number) => percent((n * 100) / of);
    lines.push(
      `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters`,
    );
  }
  if (r.imageEndOffset) lines.push(`Image end offset: ${r.imageEndOffset}`);
  return lines.join('\n');
}

/** printf("%0.2f"): exact ties round to even (0.625 -> "0.62"), where toFixed rounds up. */
function percent(x: number): string {
  const scaled = x * 100;
  const floor = Math.floor(scaled);
  if (scaled - floor !== 0.5) return x.toFixed(2);
  const n = floor % 2 === 0 ? floor : floor + 1;
  return `${Math.floor(n / 100)}.${String(n % 100).padStart(2, '0')}`;
}
