import { readFileSync } from 'node:fs';
import { ioError, UsageError } from '../errors.js';
import { isValidClusterSize } from '../formats/qcow2/writer/layout.js';
import type { OpenOptions } from '../open.js';
import type { HttpOptions } from '../sources/http.js';
import { environmentDefaults } from './env.js';
import { parseSize } from './size.js';

export { parseSize };

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
  'force-share'?: boolean | undefined;
}): OpenOptions {
  const opts: OpenOptions = environmentDefaults(values['cache-dir']);
  // A local image that a VM or qemu-nbd writes is refused, as by qemu-img (-U reads it anyway).
  if (values['force-share'] !== true) opts.refuseWritten = true;
  if (values.format !== undefined) opts.format = values.format;
  if (values.untrusted) opts.untrusted = true;
  if (values['allow-backing'])
    opts.allowBacking = [...values['allow-backing'], ...(opts.allowBacking ?? [])];
  if (values.member !== undefined) opts.member = values.member;
  if (values['max-staged'] !== undefined)
    opts.maxStaged = parseSize(values['max-staged'], '--max-staged');
  const http = httpOptions(values);
  if (Object.keys(http).length > 0) opts.http = http;
  return opts;
}

/** --min-rate, --min-rate-window, --insecure and --ca-cert FILE as library options. */
export function httpOptions(values: {
  'min-rate'?: string | undefined;
  'min-rate-window'?: string | undefined;
  insecure?: boolean | undefined;
  'ca-cert'?: string | undefined;
}): HttpOptions {
  const http: HttpOptions = rateOptions(values);
  if (values.insecure) http.insecure = true;
  if (values['ca-cert'] !== undefined) http.caCert = readCaCert(values['ca-cert']);
  return http;
}

/** What convert and checksum say about an HTTP source without ETag or Last-Modified. */
export function unverifiedNotice(url: string): string {
  return `${url} has no ETag or Last-Modified: consistency across requests cannot be guaranteed`;
}

/** The same open options, printing unverifiedNotice on stderr (unless -q) when it applies. */
export function noticeUnverified(opts: OpenOptions): OpenOptions {
  const onUnverified = (url: string) => note(unverifiedNotice(url));
  return { ...opts, http: { ...opts.http, onUnverified } };
}

/** A one-line note on stderr (nothing after -q). */
export function note(line: string): void {
  if (!quiet) process.stderr.write(`diskpipe: note: ${line}\n`);
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

let quiet = false;

/** After -q: print writes nothing. */
export function setQuiet(): void {
  quiet = true;
}

/** Writes a line of output to stdout (nothing after -q). */
export function print(line: string): void {
  if (!quiet) process.stdout.write(`${line}\n`);
}

/** A qcow2 cluster size (--cluster-size, -o cluster_size=): a power of two, 512 to 2M. */
export function parseClusterSize(text: string): number {
  const size = parseSize(text, 'cluster size');
  if (!isValidClusterSize(size))
    throw new UsageError('cluster size must be a power of two between 512 and 2M');
  return size;
}
