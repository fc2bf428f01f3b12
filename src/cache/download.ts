/**
 * Resumable HTTP(S) download into a partial file, hashed while it streams, through the one
 * HTTP client (sources/http-client.ts: retries, redirects, credentials, timeouts, minimum
 * rate, CA options, AbortSignal). The partial file is sparse: 4 KiB blocks of zeroes are never
 * written. A partial download keeps its validator (ETag / Last-Modified) beside it, so the
 * next attempt asks only for the missing bytes with Range + If-Range and starts over if the
 * file changed.
 */
import { stat, unlink } from 'node:fs/promises';
import { ChecksumMismatchError, HttpError, UsageError } from '../errors.js';
import { LocalFile } from '../io/file.js';
import { readJson, writeJsonDurably } from '../io/json-file.js';
import { type DownloadLimits, downloadBound, tooLarge } from '../sources/download-limits.js';
import { discard, pumpBody } from '../sources/http-body.js';
import { type AnyResponse, HttpClient, type HttpClientOptions } from '../sources/http-client.js';
import { statusError } from '../sources/http-errors.js';
import {
  conditionalHeaders,
  contentLength,
  ifRangeValue,
  parseContentRange,
  storedValidators,
  type Validators,
  validatorsOf,
} from '../sources/http-validators.js';
import { isNoSpace } from './cache-full.js';
import { type DigestAlgorithm, type DownloadDigests, DownloadHash } from './download-hash.js';
import { EarlyWriteback } from './early-writeback.js';
import { SparseWriter } from './sparse-writer.js';

export type { Validators } from '../sources/http-validators.js';
export type { DigestAlgorithm, DownloadDigests } from './download-hash.js';

export interface ExpectedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

export interface DownloadOptions {
  /** The URL (user:password in it goes as a Basic Authorization header to its origin only). */
  url: string;
  /** Where the bytes go; kept across attempts for resuming. */
  partPath: string;
  expected?: ExpectedDigest | undefined;
  /** Send a conditional request; a 304 answer means the cached copy is current. */
  revalidate?: Validators | undefined;
  onProgress?: ((done: number, total: number | undefined) => void) | undefined;
  /** Attempts after a failure (default 4), with the client's backoff. */
  retries?: number | undefined;
  /** Abort when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Minimum transfer rate and largest size (sources/download-limits.ts). */
  limits?: DownloadLimits | undefined;
  /** TLS (caCert, insecure), extra headers and the other client settings. */
  http?: HttpClientOptions | undefined;
  /**
   * Also compute the blkhash of the whole download (`digests.blkhash`) when its first bytes
   * could be a raw image, on the same worker and pass as the download digest.
   */
  rawContent?: boolean | undefined;
  /** An attempt starts writing the partial file at `start`, towards `total` bytes if known. */
  onAttempt?: ((start: number, total: number | undefined) => void) | undefined;
  /** The partial file holds every byte before `position` (a reader may follow it). */
  onPersisted?: ((position: number) => void) | undefined;
  /**
   * Make the complete partial file durable before returning (default true). false: the
   * caller does it if it keeps the file (pull, when the file was converted alongside, only
   * deletes it).
   */
  syncPart?: boolean | undefined;
}

export interface DownloadResult {
  notModified: boolean;
  size: number;
  /** ETag / Last-Modified of what was downloaded (what a cache record keeps). */
  validators: Validators;
  /**
   * Hex digests of the whole download: always sha256, plus the expected algorithm, plus
   * blkhash with `rawContent` when the download could be raw.
   */
  digests: DownloadDigests;
  /** Bytes already present from an earlier, interrupted attempt. */
  resumedFrom: number;
  /** Bytes fetched over the network by this call. */
  fetched: number;
  /** Bytes written to the partial file by this call (zero blocks are skipped). */
  written: number;
}

interface PartMeta extends Validators {
  url: string;
  total?: number | undefined;
}

/** What every attempt of one download adds up. */
interface Totals {
  fetched: number;
  written: number;
  resumedFrom: number | undefined;
}

export function parseDigestSpec(spec: string): ExpectedDigest {
  const m = /^(sha256|sha512):([0-9a-fA-F]+)$/.exec(spec);
  const len = m?.[1] === 'sha256' ? 64 : 128;
  if (!m || m[2]!.length !== len)
    throw new UsageError(`invalid --digest '${spec}' (expected sha256:HEX or sha512:HEX)`);
  return { algorithm: m[1] as DigestAlgorithm, hex: m[2]!.toLowerCase() };
}

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const client = new HttpClient(opts.url, clientOptions(opts));
  const totals: Totals = { fetched: 0, written: 0, resumedFrom: undefined };
  try {
    const r = await client.withRetries(() => attempt(client, opts, totals));
    return { ...r, ...totals, resumedFrom: totals.resumedFrom ?? 0 };
  } finally {
    client.close();
  }
}

function clientOptions(o: DownloadOptions): HttpClientOptions {
  const c: HttpClientOptions = { ...o.http };
  if (o.retries !== undefined) c.retries = o.retries;
  if (o.idleTimeoutMs !== undefined) c.timeoutMs = o.idleTimeoutMs;
  if (o.limits?.minRate !== undefined) c.minRate = o.limits.minRate;
  if (o.limits?.minRateWindowMs !== undefined) c.minRateWindowMs = o.limits.minRateWindowMs;
  if (o.signal) c.signal = o.signal;
  return c;
}

type Attempt = Omit<DownloadResult, 'fetched' | 'written' | 'resumedFrom'>;

/** One request: resumes what the partial file holds, or starts over. */
async function attempt(
  client: HttpClient,
  opts: DownloadOptions,
  totals: Totals,
): Promise<Attempt> {
  // The part's metadata names the URL without credentials: they never reach a file.
  const label = client.label;
  const metaPath = `${opts.partPath}.json`;
  const meta = await readJson<PartMeta>(metaPath);
  const validator = meta ? ifRangeValue(meta) : undefined;
  // Without a validator a partial file cannot be trusted.
  const have = meta?.url === label && validator ? await sizeOf(opts.partPath) : 0;
  // A complete part (the process died after the download) asks again for its last byte
  // only: a 206 proves the validator still matches, and nothing else is fetched.
  const complete = have > 0 && meta?.total === have;
  const from = complete ? have - 1 : have;
  const res = await client.download(
    have > 0
      ? { range: [from], headers: { 'if-range': validator! } }
      : { headers: conditionalHeaders(opts.revalidate) },
  );
  const found = validatorsOf(res.headers, res.status);
  if (res.status === 304) {
    discard(res);
    const validators = { ...storedValidators(opts.revalidate ?? {}), ...storedValidators(found) };
    return { notModified: true, size: 0, validators, digests: {} };
  }
  if (res.status === 416 && have > 0) {
    discard(res);
    // The part may be complete (its size matches the server's): confirm the validator by
    // asking for the last byte with If-Range, instead of downloading it all again.
    if (!complete && found.size === have) {
      await writeJsonDurably(metaPath, { ...meta, url: label, total: have } satisfies PartMeta);
      return attempt(client, opts, totals);
    }
    await discardPart(opts.partPath);
    throw new HttpError(`${label}: range not satisfiable`, true, 416);
  }
  if (res.status !== 200 && res.status !== 206) {
    discard(res);
    throw statusError(res.status, label);
  }
  const encoding = res.headers['content-encoding'];
  if (encoding && encoding !== 'identity') {
    discard(res);
    throw new HttpError(`${label}: server sent Content-Encoding ${encoding}`, false);
  }
  const start = res.status === 206 ? from : 0;
  if (res.status === 206 && parseContentRange(res.headers)?.start !== from) {
    discard(res);
    await discardPart(opts.partPath);
    throw new HttpError(`${label}: unexpected Content-Range`, true);
  }
  const resized =
    found.size !== undefined && meta?.total !== undefined && found.size !== meta.total;
  if (res.status === 206 && resized) {
    // Same validator, another length: the server changed the file without saying so. The
    // part would splice two versions together; start over.
    discard(res);
    await discardPart(opts.partPath);
    throw new HttpError(
      `${label}: the resource changed size on the server (${meta?.total} → ${found.size} bytes)`,
      true,
    );
  }
  const length = contentLength(res.headers);
  const total = found.size ?? (length !== undefined ? start + length : undefined);
  totals.resumedFrom ??= start;
  return receive(res, opts, totals, { label, start, total, validators: found });
}

/** Writes and hashes the body of a 200/206 answer from `start` on. */
async function receive(
  res: AnyResponse,
  opts: DownloadOptions,
  totals: Totals,
  at: { label: string; start: number; total: number | undefined; validators: Validators },
): Promise<Attempt> {
  const { label, start, total } = at;
  const place = { label, partPath: opts.partPath, start, total };
  const limits = opts.limits ?? {};
  let max: number;
  try {
    max = await downloadBound(place, limits);
  } catch (err) {
    discard(res);
    await discardPart(opts.partPath);
    throw err;
  }
  // Before the part is cut back to `start`: a reader must not see it shrink.
  opts.onAttempt?.(start, total);
  const validators = storedValidators(at.validators);
  await writeJsonDurably(`${opts.partPath}.json`, {
    url: label,
    ...validators,
    total,
  } satisfies PartMeta);

  const hash = new DownloadHash(opts.expected?.algorithm, opts.rawContent === true);
  try {
    await hash.hashPrefix(opts.partPath, start);
    const file = await openPart(opts.partPath, start);
    // The digest worker reads the write stages where they are (no second copy of the stream).
    const writer = new SparseWriter(
      file,
      start,
      // A path in the cache: a full cache filesystem is reported as such (cache-full.ts).
      `the download to ${opts.partPath}`,
      (bytes) => hash.take(bytes),
      true,
    );
    writer.onFlushed = opts.onPersisted;
    // A download that could be raw is usually kept as the cache's file, made durable before it
    // is published: its data goes to disk while it streams, so that final sync finds little
    // left (it wrote all 300 MiB of a 1 GiB raw pull at the end: 0.3-0.8 s, nothing else
    // running). Other downloads are converted and deleted: no writeback is asked for.
    const writeback = new EarlyWriteback(file);
    writer.onWrite = (n) => {
      if (hash.rawCandidate) writeback.wrote(n);
    };
    let position = start;
    let overLimit = false;
    try {
      await pumpBody(
        res,
        label,
        start,
        total,
        (chunk) => {
          if (position + chunk.length > max) {
            overLimit = true;
            throw tooLarge(place, max, limits);
          }
          // The writer copies the chunk before the promise it may return settles.
          const waiting = writer.write(chunk);
          position += chunk.length;
          opts.onProgress?.(position, total);
          return waiting;
        },
        // The body is read straight into the write stage: no copy.
        () => writer.space(),
      );
      await writer.finish();
      await writeback.finish();
      if (opts.syncPart !== false) await file.sync();
    } catch (err) {
      // What arrived is kept (its size tells the next attempt where to resume).
      const kept = await writer.finish().then(
        () => true,
        () => false,
      );
      if (!kept) position = start;
      // A kept part would fill the cache's filesystem and make every later pull fail; one
      // past the size limit would only be refused again.
      if (isNoSpace(err) || overLimit) await discardPart(opts.partPath);
      throw err;
    } finally {
      totals.fetched += position - start;
      totals.written += writer.written;
      // Not closed under a running sync (its failure, if any, was the attempt's).
      await writeback.finish().catch(() => {});
      await file.close();
    }
    if (total !== undefined && position !== total)
      throw new HttpError(`${label}: connection closed after ${position} of ${total} bytes`, true);
    const digests = await hash.digests();
    const expected = opts.expected;
    if (expected && digests[expected.algorithm] !== expected.hex) {
      await discardPart(opts.partPath);
      const actual = digests[expected.algorithm] ?? '';
      throw new ChecksumMismatchError(
        `${label}: download ${expected.algorithm} is ${actual}, expected ${expected.hex}`,
        expected.hex,
        actual,
      );
    }
    return { notModified: false, size: position, validators, digests };
  } finally {
    hash.close();
  }
}

/** Removes a partial download and its metadata. */
export async function discardPart(partPath: string): Promise<void> {
  await unlink(partPath).catch(() => {});
  await unlink(`${partPath}.json`).catch(() => {});
}

async function openPart(path: string, start: number): Promise<LocalFile> {
  const file = await LocalFile.open(path, start > 0 ? 'r+' : 'w+');
  try {
    if (start > 0) await file.truncate(start);
    return file;
  } catch (err) {
    await file.close();
    throw err;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
