import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ioError, UsageError } from '../errors.js';
import type { OpenOptions } from '../open.js';
import type { HttpOptions } from '../sources/http.js';
import { environmentDefaults } from './env.js';
import { parseSize } from './size.js';

export { parseSize };

export interface Command {
  readonly name: string;
  /** One-line synopsis, as in DESIGN.md. */
  readonly synopsis: string;
  readonly help: string;
  /** Returns the exit status (0 ok, 1 a negative answer). Throws DiskpipeError on errors. */
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Config<T extends Options> = {
  args: string[];
  options: T & typeof HELP_OPTION & typeof QUIET_OPTION;
  allowPositionals: true;
  strict: true;
};
export type Parsed<T extends Options> = ReturnType<typeof parseArgs<Config<T>>>;

/** The minimum transfer rate of HTTP reads and downloads (curl's --speed-limit/--speed-time). */
export const RATE_OPTIONS = {
  'min-rate': { type: 'string' },
  'min-rate-window': { type: 'string' },
} as const satisfies Options;

/** --min-rate SIZE (bytes/s, 0: none) and --min-rate-window SECONDS as library options. */
export function rateOptions(values: {
  'min-rate'?: string | undefined;
  'min-rate-window'?: string | undefined;
}): { minRate?: number; minRateWindowMs?: number } {
  const out: { minRate?: number; minRateWindowMs?: number } = {};
  if (values['min-rate'] !== undefined)
    out.minRate = parseSize(values['min-rate'].replace(/\/s$/i, ''), '--min-rate');
  const w = values['min-rate-window'];
  if (w !== undefined) {
    const s = Number(w.replace(/s$/i, ''));
    if (!(s > 0) || !Number.isSafeInteger(Math.round(s * 1000)))
      throw new UsageError(`invalid --min-rate-window '${w}' (seconds)`);
    out.minRateWindowMs = Math.round(s * 1000);
  }
  return out;
}

/** Options every image-reading command takes (trust rule, forced format). */
export const IMAGE_OPTIONS = {
  format: { type: 'string', short: 'f' },
  untrusted: { type: 'boolean' },
  'allow-backing': { type: 'string', multiple: true },
  'cache-dir': { type: 'string' },
  member: { type: 'string' },
  'max-staged': { type: 'string' },
  ...RATE_OPTIONS,
  insecure: { type: 'boolean' },
  'ca-cert': { type: 'string' },
} as const satisfies Options;

export const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const satisfies Options;
/** -q, accepted by every command: no output but errors (qemu-img's quiet mode). */
export const QUIET_OPTION = { quiet: { type: 'boolean', short: 'q' } } as const satisfies Options;

let quiet = false;

/** Parses argv strictly; unknown flags and missing values become usage errors. */
export function parse<T extends Options>(argv: string[], options: T): Parsed<T> {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, ...HELP_OPTION, ...QUIET_OPTION },
      allowPositionals: true,
      strict: true,
    });
    if ((parsed.values as { quiet?: boolean }).quiet) quiet = true;
    return parsed;
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
}

export function openOptions(values: {
  format?: string | undefined;
  untrusted?: boolean | undefined;
  'allow-backing'?: string[] | undefined;
  'cache-dir'?: string | undefined;
  member?: string | undefined;
  'max-staged'?: string | undefined;
  'min-rate'?: string | undefined;
  'min-rate-window'?: string | undefined;
  insecure?: boolean | undefined;
  'ca-cert'?: string | undefined;
}): OpenOptions {
  const opts: OpenOptions = environmentDefaults(values['cache-dir']);
  if (values.format !== undefined) opts.format = values.format;
  if (values.untrusted) opts.untrusted = true;
  if (values['allow-backing'])
    opts.allowBacking = [...values['allow-backing'], ...(opts.allowBacking ?? [])];
  if (values.member !== undefined) opts.member = values.member;
  if (values['max-staged'] !== undefined)
    opts.maxStaged = parseSize(values['max-staged'], '--max-staged');
  const http: HttpOptions = rateOptions(values);
  if (values.insecure) http.insecure = true;
  if (values['ca-cert'] !== undefined) http.caCert = readCaCert(values['ca-cert']);
  if (Object.keys(http).length > 0) opts.http = http;
  return opts;
}

function readCaCert(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw ioError(err, `--ca-cert ${path}`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    throw new UsageError(`--ca-cert ${path}: not a PEM certificate file`);
  return text;
}

export function positionals(list: string[], min: number, max: number, usage: string): string[] {
  if (list.length < min || list.length > max) throw new UsageError(`usage: ${usage}`);
  return list;
}

/** Formats a byte count as qemu-img does in human output ("8 GiB", "1.5 MiB"). */
export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n} B`;
  const s = String(Number(v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0))); // 360, 1.5, 2 (not 36)
  return `${s} ${units[i]}`;
}

/** Writes a line of output to stdout (nothing after -q). */
export function print(line: string): void {
  if (!quiet) process.stdout.write(`${line}\n`);
}
