/**
 * Resumable HTTP(S) download into a partial file, hashed while it streams. The partial file
 * is sparse: 4 KiB blocks of zeroes are never written.
 * A partial download keeps its validator (ETag / Last-Modified) beside it, so the next attempt
 * asks only for the missing bytes with Range + If-Range and starts over if the file changed.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, open, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChecksumMismatchError, DiskpipeError, HttpError, ioError, UsageError } from '../errors.js';
import { readJson, writeJsonDurably } from '../io/json-file.js';
import { basicAuthorization, withoutCredentials } from '../sources/credentials.js';
import {
  type DownloadLimits,
  limitedBody,
  TransferLimitError,
} from '../sources/download-limits.js';
import { SparseWriter } from './sparse-writer.js';
import { StreamDigests } from './stream-digest.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

export interface ExpectedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

export interface Validators {
  etag?: string | undefined;
  lastModified?: string | undefined;
}

export interface DownloadOptions {
  url: string;
  /** Where the bytes go; kept across attempts for resuming. */
  partPath: string;
  expected?: ExpectedDigest | undefined;
  /** Send a conditional request; a 304 answer means the cached copy is current. */
  revalidate?: Validators | undefined;
  onProgress?: ((done: number, total: number | undefined) => void) | undefined;
  /** Attempts after a failure mid-transfer (default 4), with exponential backoff. */
  retries?: number;
  /** Abort when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  /** Minimum transfer rate and largest size (sources/download-limits.ts). */
  limits?: DownloadLimits | undefined;
  /**
   * Sees every byte of the download in order from offset 0 (a resumed prefix is read back
   * from the partial file first); `restart` comes before each attempt's first byte.
   */
  observer?: DownloadObserver | undefined;
  /** An attempt starts writing the partial file at `start`, towards `total` bytes if known. */
  onAttempt?: ((start: number, total: number | undefined) => void) | undefined;
  /** The partial file holds every byte before `position` (a reader may follow it). */
  onPersisted?: ((position: number) => void) | undefined;
}

export interface DownloadObserver {
  restart(): void;
  /** May return a promise to make the download wait (back-pressure). */
  data(chunk: Uint8Array): Promise<void> | undefined;
}

export interface DownloadResult {
  notModified: boolean;
  size: number;
  validators: Validators;
  /** Hex digests of the whole download: always sha256, plus the expected algorithm. */
  digests: Partial<Record<DigestAlgorithm, string>>;
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

export function parseDigestSpec(spec: string): ExpectedDigest {
  const m = /^(sha256|sha512):([0-9a-fA-F]+)$/.exec(spec);
  const len = m?.[1] === 'sha256' ? 64 : 128;
  if (!m || m[2]!.length !== len)
    throw new UsageError(`invalid --digest '${spec}' (expected sha256:HEX or sha512:HEX)`);
  return { algorithm: m[1] as DigestAlgorithm, hex: m[2]!.toLowerCase() };
}

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const retries = opts.retries ?? 4;
  let fetched = 0;
  let written = 0;
  let resumedFrom = -1;
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await attemptDownload(opts, basicAuthorization(opts.url));
      if (resumedFrom < 0) resumedFrom = r.resumedFrom;
      fetched += r.fetched;
      written += r.written;
      return { ...r, resumedFrom, fetched, written };
    } catch (err) {
      const e = err as DiskpipeError & {
        fetched?: number;
        written?: number;
        resumedFrom?: number;
        transient?: boolean;
      };
      if (resumedFrom < 0 && e.resumedFrom !== undefined) resumedFrom = e.resumedFrom;
      fetched += e.fetched ?? 0;
      written += e.written ?? 0;
      if (!e.transient || attempt >= retries || opts.signal?.aborted) throw err;
      await sleep(Math.min(200 * 2 ** attempt, 5000));
    }
  }
}

async function attemptDownload(
  given: DownloadOptions,
  authorization: string | undefined,
): Promise<DownloadResult> {
  // user:password never goes into a message or the part's metadata: it is sent as a header,
  // which fetch drops on a redirect to another origin.
  const opts = { ...given, url: withoutCredentials(given.url) };
  const metaPath = `${opts.partPath}.json`;
  const meta = await readJson<PartMeta>(metaPath);
  let have = meta?.url === opts.url ? await sizeOf(opts.partPath) : 0;
  const validator = meta?.etag ?? meta?.lastModified;
  if (have > 0 && !validator) have = 0; // without a validator a partial file cannot be trusted

  // A complete part (the process died after the download) asks again for its last byte
  // only: a 206 proves the validator still matches, and nothing else is fetched.
  const complete = have > 0 && meta?.total === have;
  const from = complete ? have - 1 : have;
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (authorization) headers.authorization = authorization;
  if (have > 0) {
    headers.range = `bytes=${from}-`;
    headers['if-range'] = validator!;
  } else if (opts.revalidate?.etag) {
    headers['if-none-match'] = opts.revalidate.etag;
  } else if (opts.revalidate?.lastModified) {
    headers['if-modified-since'] = opts.revalidate.lastModified;
  }

  const idle = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, idle.signal]) : idle.signal;
  let timer = setTimeout(() => idle.abort(), opts.idleTimeoutMs ?? 30_000);
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(), opts.idleTimeoutMs ?? 30_000);
  };

  let response: Response;
  try {
    response = await fetch(opts.url, { headers, redirect: 'follow', signal });
  } catch (err) {
    clearTimeout(timer);
    throw transient(
      new HttpError(`${opts.url}: ${networkReason(err, idle.signal.aborted)}`, false),
      0,
      have,
    );
  }

  const validators: Validators = {
    etag: response.headers.get('etag') ?? undefined,
    lastModified: response.headers.get('last-modified') ?? undefined,
  };
  if (response.status === 304) {
    clearTimeout(timer);
    await response.body?.cancel();
    return {
      notModified: true,
      size: 0,
      validators: { ...opts.revalidate, ...pick(validators) },
      digests: {},
      resumedFrom: 0,
      fetched: 0,
      written: 0,
    };
  }
  if (response.status === 416 && have > 0) {
    clearTimeout(timer);
    await response.body?.cancel();
    // The part may be complete (its size matches the server's): confirm the validator by
    // asking for the last byte with If-Range, instead of downloading it all again.
    const total = /^bytes \*\/(\d+)$/.exec(response.headers.get('content-range') ?? '');
    if (!complete && total && Number(total[1]) === have) {
      await writeJsonDurably(metaPath, { ...meta, url: opts.url, total: have } satisfies PartMeta);
      return attemptDownload(given, authorization);
    }
    await discardPart(opts.partPath);
    throw transient(new HttpError(`${opts.url}: range not satisfiable`, false), 0, have);
  }
  if (!response.ok) {
    clearTimeout(timer);
    await response.body?.cancel();
    const err = new HttpError(
      `${opts.url}: HTTP ${response.status} ${response.statusText}`.trim(),
      false,
      response.status,
    );
    throw response.status >= 500 || response.status === 429 ? transient(err, 0, have) : err;
  }

  let start = 0;
  if (response.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
    if (!m || Number(m[1]) !== from) {
      clearTimeout(timer);
      await response.body?.cancel();
      await discardPart(opts.partPath);
      throw transient(new HttpError(`${opts.url}: unexpected Content-Range`, false), 0, have);
    }
    start = from;
  }
  const length = Number(response.headers.get('content-length') ?? Number.NaN);
  const total = Number.isFinite(length) ? start + length : undefined;
  // Before the part is cut back to `start`: a reader must not see it shrink.
  opts.onAttempt?.(start, total);
  await writeJsonDurably(metaPath, {
    url: opts.url,
    ...pick(validators),
    total,
  } satisfies PartMeta);

  const hashes = makeHashes(opts.expected?.algorithm);
  opts.observer?.restart();
  if (start > 0)
    await hashExisting(opts.partPath, start, hashes, opts.observer).catch((err) => {
      hashes.close();
      throw err;
    });
  const handle = await openPart(opts.partPath, start);
  const writer = new SparseWriter(handle, start, 'the download');
  writer.onFlushed = opts.onPersisted;
  let position = start;
  try {
    if (!response.body) throw new HttpError(`${opts.url}: empty response`, false);
    const where = { url: opts.url, partPath: opts.partPath, start, total };
    for await (const chunk of limitedBody(response, where, opts.limits ?? {}, () => idle.abort())) {
      touch();
      await writer.write(chunk);
      const behind = hashes.update(chunk);
      if (behind) await behind;
      const observing = opts.observer?.data(chunk);
      if (observing) await observing;
      position += chunk.length;
      opts.onProgress?.(position, total);
    }
  } catch (err) {
    clearTimeout(timer);
    hashes.close();
    // What arrived is kept (its size tells the next attempt where to resume).
    const kept = await writer.finish().then(
      () => true,
      () => false,
    );
    await handle.close();
    if (!kept) position = start;
    if (isNoSpace(err)) {
      // A kept part would fill the cache's filesystem and make every later pull fail.
      await discardPart(opts.partPath);
      throw err;
    }
    if (err instanceof DiskpipeError && (err.code !== 'HTTP' || err instanceof TransferLimitError))
      throw err;
    throw transient(
      new HttpError(
        `${opts.url}: ${networkReason(err, idle.signal.aborted)} after ${position} bytes`,
        false,
      ),
      position - start,
      start,
      writer.written,
    );
  }
  clearTimeout(timer);
  try {
    await writer.finish();
    await handle.sync();
  } catch (err) {
    hashes.close();
    throw err;
  } finally {
    await handle.close();
  }
  if (total !== undefined && position !== total) {
    hashes.close();
    throw transient(
      new HttpError(`${opts.url}: connection closed after ${position} of ${total} bytes`, false),
      position - start,
      start,
      writer.written,
    );
  }
  return {
    ...(await finishDigests(opts, hashes, position, start, validators)),
    written: writer.written,
  };
}

async function finishDigests(
  opts: DownloadOptions,
  hashes: StreamDigests,
  position: number,
  start: number,
  validators: Validators,
): Promise<Omit<DownloadResult, 'written'>> {
  const digests: Partial<Record<DigestAlgorithm, string>> = await hashes.finish();
  if (opts.expected && digests[opts.expected.algorithm] !== opts.expected.hex) {
    await discardPart(opts.partPath);
    const actual = digests[opts.expected.algorithm] ?? '';
    throw new ChecksumMismatchError(
      `${opts.url}: download ${opts.expected.algorithm} is ${actual}, expected ${opts.expected.hex}`,
      opts.expected.hex,
      actual,
    );
  }
  return {
    notModified: false,
    size: position,
    validators: pick(validators),
    digests,
    resumedFrom: start,
    fetched: position - start,
  };
}

/** Removes a partial download and its metadata. */
export async function discardPart(partPath: string): Promise<void> {
  await unlink(partPath).catch(() => {});
  await unlink(`${partPath}.json`).catch(() => {});
}

/** sha256 always, plus the expected digest's algorithm; hashed on a worker thread. */
function makeHashes(extra: DigestAlgorithm | undefined): StreamDigests {
  return new StreamDigests(extra && extra !== 'sha256' ? ['sha256', extra] : ['sha256']);
}

async function hashExisting(
  path: string,
  length: number,
  hashes: StreamDigests,
  observer: DownloadObserver | undefined,
): Promise<void> {
  const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const behind = hashes.update(chunk);
    if (behind) await behind;
    const observing = observer?.data(chunk);
    if (observing) await observing;
  }
}

async function openPart(path: string, start: number): Promise<FileHandle> {
  try {
    const h = await open(path, start > 0 ? 'r+' : 'w');
    if (start > 0) await h.truncate(start);
    return h;
  } catch (err) {
    throw ioError(err, `cannot write ${path}`);
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

function isNoSpace(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.code === 'ENOSPC' || e?.cause?.code === 'ENOSPC';
}

function pick(v: Validators): Validators {
  const out: Validators = {};
  if (v.etag) out.etag = v.etag;
  if (v.lastModified) out.lastModified = v.lastModified;
  return out;
}

function transient<T extends DiskpipeError>(
  err: T,
  fetched: number,
  resumedFrom: number,
  written = 0,
): T {
  return Object.assign(err, { transient: true, fetched, resumedFrom, written });
}

function networkReason(err: unknown, idle: boolean): string {
  if (idle) return 'no data received for too long (timeout)';
  const e = err as { cause?: { code?: string; message?: string }; message?: string };
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
