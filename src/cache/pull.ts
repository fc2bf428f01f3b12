/**
 * pull: download an image once, convert it once to a sparse raw file, and store it under its
 * content digest. Order of writes makes a kill at any moment safe: the blob's data is renamed
 * into place first, then its metadata, then the URL record, so no record ever points at
 * missing or partial data; the partial download stays in tmp/ for the next attempt to resume.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, open, rename, stat, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CacheError, ChecksumMismatchError, ioError, UsageError } from '../errors.js';
import type { ProgressListener } from '../image/types.js';
import { registerTemporary, unregisterTemporary } from '../io/cleanup.js';
import { LocalFile } from '../io/file.js';
import { syncDirectory } from '../io/json-file.js';
import { acquireLock } from '../io/lock.js';
import { refuseWritten } from '../io/qemu-locks.js';
import { withoutCredentials } from '../sources/credentials.js';
import type { DownloadLimits } from '../sources/download-limits.js';
import { DownloadGoneError, GrowingFile } from '../sources/growing-file.js';
import type { HttpClientOptions } from '../sources/http-client.js';
import type { UnwrapOptions } from '../sources/unwrap.js';
import { blobProblem, checkBlob } from './blob-check.js';
import { cacheFull, isNoSpace } from './cache-full.js';
import {
  type DownloadResult,
  discardPart,
  download,
  type ExpectedDigest,
  parseDigestSpec,
} from './download.js';
import type { CacheEventListener } from './events.js';
import { CacheLayout, urlKey } from './layout.js';
import { blobLockPath } from './maintenance.js';
import type { Converted } from './pull-convert.js';
import { CacheIndex, now, type SourceRecord } from './records.js';
import type { StoredRaw } from './store-raw.js';
import { cacheTemporaryName, sweepTemporaries } from './temp-files.js';

export interface PullOptions {
  cacheDir?: string | undefined;
  /** Expected download digest, `sha256:HEX` or `sha512:HEX`; verified while streaming. */
  digest?: string | undefined;
  /** Use the cache only: never touch the network. */
  offline?: boolean | undefined;
  /** Phases `download`, `convert`, `hash`. */
  onProgress?: ProgressListener | undefined;
  /** Waiting for another process's lock; about to publish. */
  onEvent?: CacheEventListener | undefined;
  /** Where staged files go and how large they may grow (a format inside a compressed file). */
  stage?: UnwrapOptions | undefined;
  signal?: AbortSignal | undefined;
  /** Give up on a download when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number | undefined;
  /** Download attempts after a failure mid-transfer (default 4). */
  retries?: number | undefined;
  /** --min-rate, --min-rate-window, --max-download. */
  limits?: DownloadLimits | undefined;
  /** HTTP client settings: --ca-cert (caCert), --insecure, extra headers. */
  http?: HttpClientOptions | undefined;
  /**
   * Store the sparsified content (filters/sparsify: blocks the guest filesystems mark free
   * read as zeroes). Recorded under sparsifiedUrl(url), beside the plain variant; both share
   * one download.
   */
  sparsify?: boolean | undefined;
}

export interface PullResult {
  url: string;
  /** The cached sparse raw file (read-only). */
  path: string;
  record: SourceRecord;
  /** Served from the cache, nothing converted. */
  hit: boolean;
  /** Bytes fetched over the network by this pull. */
  downloaded: number;
  /** Bytes of data this pull wrote into the cache (download and conversion; zeroes are holes). */
  written: number;
}

/** The URL a source is recorded under: http(s) as given, local files as absolute file:// URLs. */
export function sourceUrl(spec: string): string {
  if (/^https?:\/\//i.test(spec)) {
    try {
      return withoutCredentials(new URL(spec).href);
    } catch {
      throw new UsageError(`invalid URL '${withoutCredentials(spec)}'`);
    }
  }
  if (/^file:\/\//i.test(spec)) return pathToFileURL(fileURLToPath(spec)).href;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
    throw new UsageError(`pull takes an http(s):// URL or a local file, not '${spec}'`);
  return pathToFileURL(resolve(spec)).href;
}

/** The URL a source's sparsified variant is recorded under (a fragment: never sent). */
export function recordUrl(url: string, sparsify: boolean | undefined): string {
  return sparsify ? `${url}${url.includes('#') ? '&' : '#'}diskpipe-sparsify` : url;
}

export async function pull(spec: string, opts: PullOptions = {}): Promise<PullResult> {
  const url = sourceUrl(spec);
  const expected = opts.digest ? parseDigestSpec(opts.digest) : undefined;
  const layout = new CacheLayout(opts.cacheDir);
  await layout.ensure();
  const index = new CacheIndex(layout);
  const asked = now();
  let waited = false;
  const lock = await acquireLock(layout.lockPath(`url-${urlKey(url)}`), {
    onWait: () => {
      waited = true;
      opts.onEvent?.({ type: 'waiting', lock: 'url', name: url });
    },
  });
  // Registered so that the CLI's signal handlers remove a half-converted file too (the
  // resumable .part stays).
  const convTmp = cacheTemporaryName(`${layout.tmpDir}/convert.raw`);
  registerTemporary(convTmp);
  try {
    // The record's URL has no credentials; the download gets them (as a header).
    const fetchUrl = /^https?:\/\//i.test(spec) ? new URL(spec).href : url;
    const since = waited ? asked : undefined;
    return await pullLocked(index, url, expected, opts, fetchUrl, convTmp, since);
  } catch (err) {
    throw cacheFull(err, layout.root, url);
  } finally {
    unregisterTemporary(convTmp);
    await lock.release();
  }
}

async function pullLocked(
  index: CacheIndex,
  url: string,
  expected: ExpectedDigest | undefined,
  opts: PullOptions,
  fetchUrl: string,
  convTmp: string,
  /** When this pull waited for another one's lock: the time it started waiting. */
  waitedSince: string | undefined,
): Promise<PullResult> {
  const layout = index.layout;
  await sweepTemporaries(layout); // what killed processes left behind
  const key = recordUrl(url, opts.sparsify);
  const known = await index.source(key);
  const stored = known ? await index.blob(known.contentDigest) : undefined;
  // A blob that fails the cheap checks (or was quarantined by verify) is not a cache hit.
  const problem = stored ? await blobProblem(index, stored) : undefined;
  const blob = problem ? undefined : stored;
  const matchesExpected = (r: SourceRecord) =>
    !expected ||
    (expected.algorithm === 'sha256'
      ? r.download.sha256 === expected.hex
      : r.download.verified?.hex === expected.hex);
  const partPath = `${layout.tmpDir}/${urlKey(url)}.part`;
  const tryHit = async () => {
    const r = known ? await hit(index, known) : undefined;
    if (r && !url.startsWith('file:')) await discardPart(partPath);
    return r;
  };

  if (opts.offline && stored && problem) await checkBlob(index, stored);
  // The pull this one waited for has just stored or confirmed the entry: asking the server
  // again would fetch it all again from one without validators (two pulls download once).
  if (known && blob && waitedSince && known.lastUsed >= waitedSince && matchesExpected(known)) {
    const r = await tryHit();
    if (r) return r;
  }
  if (known && blob && (opts.offline || (expected && matchesExpected(known)))) {
    const r = await tryHit();
    if (r) return r;
  }
  if (opts.offline) throw new CacheError(`${url} is not in the cache (and --offline was given)`);

  const isLocal = url.startsWith('file:');
  let overlapped: Converted | undefined;
  let overlapError: unknown;
  let fetched: DownloadResult;
  let input: string;
  if (isLocal) {
    input = fileURLToPath(url);
    const st = await stat(input).catch((err) => {
      throw ioError(err, `cannot open ${input}`);
    });
    const validator = `${st.size}:${st.mtimeMs}`;
    if (known && blob && known.etag === validator && matchesExpected(known)) {
      const r = await tryHit();
      if (r) return r;
    }
    await refuseWrittenLocal(input);
    fetched = await hashLocal(input, expected, validator);
  } else {
    input = partPath;
    const revalidate =
      known && blob && matchesExpected(known)
        ? { etag: known.etag, lastModified: known.lastModified }
        : undefined;
    if (revalidate && !revalidate.etag && !revalidate.lastModified)
      opts.onEvent?.({ type: 'refetching', url });
    // The converter follows the download when it can (see overlap.ts).
    const growing = new GrowingFile(input, url);
    const downloading = download({
      url: fetchUrl,
      partPath: input,
      expected,
      revalidate,
      signal: opts.signal,
      limits: opts.limits,
      http: opts.http,
      rawContent: !opts.sparsify,
      onAttempt: (start, total) => growing.attempt(start, total),
      onPersisted: (position) => growing.advance(position),
      // Synced below only if it is kept: once converted alongside, it is only deleted (its
      // sync was ~0.2 s of the pull's critical path, writing 100s of MiB nobody reads).
      syncPart: false,
      ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
      ...(opts.retries !== undefined ? { retries: opts.retries } : {}),
      onProgress: (done, total) => opts.onProgress?.({ phase: 'download', done, total }),
    }).finally(() => growing.end());
    // The converter's modules load while the request goes out and the first bytes arrive.
    preloadQcow2Reader();
    const converting = loadConverter().then((c) => c.convertDownload(growing, convTmp, opts));
    const [d, c] = await Promise.allSettled([downloading, converting]);
    await growing.close();
    if (d.status === 'rejected') {
      await unlink(convTmp).catch(() => {});
      throw d.reason;
    }
    fetched = d.value;
    if (c.status === 'fulfilled') overlapped = c.value;
    // A converter cut off by a restarted download runs again on the complete file (a
    // decompressor may have wrapped the reason).
    else if (!(c.reason instanceof DownloadGoneError) && !growing.cutOff) overlapError = c.reason;
    // The part is published as it is, converted after, or kept for a retry: durable first.
    if (!overlapped && !fetched.notModified) await syncPart(input);
    if (fetched.notModified) {
      const r = await tryHit();
      if (r) return r;
      // Removed while we asked: fetch it again, unconditionally.
      fetched = await download({
        url: fetchUrl,
        partPath: input,
        expected,
        signal: opts.signal,
        limits: opts.limits,
        http: opts.http,
        rawContent: !opts.sparsify,
        ...(opts.retries !== undefined ? { retries: opts.retries } : {}),
        onProgress: (done, total) => opts.onProgress?.({ phase: 'download', done, total }),
      });
    }
  }

  // A plain raw download was hashed as it streamed: it is the cache's file as it is.
  const rawDigest = isLocal || opts.sparsify ? undefined : fetched.digests.blkhash;
  const converter = await loadConverter();
  const asIs = rawDigest ? await converter.plainRaw(input, rawDigest, opts.stage) : undefined;
  const tmp = asIs ? input : convTmp;
  let raw: StoredRaw;
  let sourceFormat: string;
  let layers: string[];
  let converted = 0;
  try {
    if (overlapError !== undefined) throw overlapError;
    ({
      stored: raw,
      sourceFormat,
      layers,
    } = asIs ?? overlapped ?? (await converter.convertToRaw(input, tmp, opts)));
    converted = raw.written;
  } catch (err) {
    await unlink(tmp).catch(() => {});
    // Bad content is not resumed; after ENOSPC the part would only keep the disk full.
    if (!isLocal && ((err as { code?: string }).code !== 'IO' || isNoSpace(err)))
      await discardPart(input);
    throw err;
  }
  opts.onEvent?.({ type: 'publishing', url: key });
  const time = now();
  const record: SourceRecord = {
    version: 1,
    url: key,
    ...(fetched.validators.etag ? { etag: fetched.validators.etag } : {}),
    ...(fetched.validators.lastModified ? { lastModified: fetched.validators.lastModified } : {}),
    download: {
      size: fetched.size,
      sha256: fetched.digests.sha256!,
      ...(expected ? { verified: { algorithm: expected.algorithm, hex: expected.hex } } : {}),
    },
    sourceFormat,
    compression: layers.filter((l) => l !== 'tar').join('+') || null,
    contentDigest: raw.contentDigest,
    virtualSize: raw.virtualSize,
    allocatedSize: raw.allocatedSize,
    created: known?.created ?? time,
    lastUsed: time,
  };
  await publishBlob(index, tmp, raw, record);
  if (!isLocal) await discardPart(input);
  return {
    url: key,
    path: layout.blobPath(raw.contentDigest),
    record,
    hit: false,
    downloaded: fetched.fetched,
    written: fetched.written + converted,
  };
}

/**
 * A cache hit, confirmed under the blob's lock (rm/prune take it too), so a pull never reports
 * a path that a concurrent rm is deleting; undefined when the blob went away meanwhile.
 */
async function hit(index: CacheIndex, record: SourceRecord): Promise<PullResult | undefined> {
  const lock = await acquireLock(blobLockPath(index, record.contentDigest));
  try {
    const blob = await index.blob(record.contentDigest);
    if (!blob || (await blobProblem(index, blob))) return undefined;
    const time = now();
    const updated = { ...record, lastUsed: time };
    await index.saveSource(updated);
    await index.saveBlob({ ...blob, lastUsed: time });
    return {
      url: record.url,
      path: index.layout.blobPath(record.contentDigest),
      record: updated,
      hit: true,
      downloaded: 0,
      written: 0,
    };
  } finally {
    await lock.release();
  }
}

/**
 * pull-convert.ts and the formats, codecs and copy engine it imports: most of pull's modules,
 * loaded once the download is under way (they took ~0.3 s before the request went out).
 */
function loadConverter(): Promise<typeof import('./pull-convert.js')> {
  return import('./pull-convert.js');
}

/**
 * The qcow2 reader, loaded beside the converter rather than after it (overlap.ts would ask
 * for it only once the converter's 90 modules are in): the two load in the ~0.1 s before the
 * body streams, not behind it on a busy event loop (first bytes -> image opened: 140-390 ms
 * before, 60-290 ms after, synthetic zstd pulls on a loaded machine).
 */
function preloadQcow2Reader(): void {
  import('../formats/qcow2/index.js').catch(() => {});
}

async function syncPart(path: string): Promise<void> {
  const file = await LocalFile.open(path, 'r');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

/**
 * Moves a converted raw file to blobs/<digest>.raw (once per content) and records it and the
 * URL record, all under the blob's lock. A stored blob that fails its checks (corrupt,
 * truncated, replaced by a symlink) is replaced: a re-pull repairs it.
 */
async function publishBlob(
  index: CacheIndex,
  tmp: string,
  stored: StoredRaw,
  record: SourceRecord,
): Promise<void> {
  const layout = index.layout;
  const digest = stored.contentDigest;
  const lock = await acquireLock(blobLockPath(index, digest));
  try {
    const existing = await index.blob(digest);
    if (existing && !(await blobProblem(index, existing))) {
      await unlink(tmp).catch(() => {}); // the same content is already stored: keep one copy
      await index.saveBlob({ ...existing, lastUsed: now() });
    } else {
      await chmod(tmp, 0o444);
      await rename(tmp, layout.blobPath(digest));
      await syncDirectory(layout.blobsDir);
      const time = now();
      await index.saveBlob({
        version: 1,
        contentDigest: digest,
        virtualSize: stored.virtualSize,
        allocatedSize: stored.allocatedSize,
        created: existing?.created ?? time,
        lastUsed: time,
      });
      await index.clearBad(digest);
    }
    await index.saveSource(record);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  } finally {
    await lock.release();
  }
}

/**
 * A local image a VM or qemu-nbd is writing is refused, as reading commands refuse it: the
 * stored copy could mix old and new metadata and data, and every later pull and disk create
 * would hand it out (pull has no -U: a snapshot of a running disk is not an image to cache).
 */
async function refuseWrittenLocal(path: string): Promise<void> {
  const handle = await open(path, 'r').catch((err) => {
    throw ioError(err, `cannot open ${path}`);
  });
  try {
    refuseWritten(handle.fd, path);
  } finally {
    await handle.close();
  }
}

async function hashLocal(
  path: string,
  expected: ExpectedDigest | undefined,
  validator: string,
): Promise<DownloadResult> {
  const sha256 = createHash('sha256');
  const extra =
    expected && expected.algorithm !== 'sha256' ? createHash(expected.algorithm) : undefined;
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, {
      highWaterMark: 1 << 20,
    }) as AsyncIterable<Buffer>) {
      sha256.update(chunk);
      extra?.update(chunk);
      size += chunk.length;
    }
  } catch (err) {
    // A directory (EISDIR) or an unreadable file: the errno, not an internal error.
    throw ioError(err, `cannot open ${path}`);
  }
  const digests: DownloadResult['digests'] = { sha256: sha256.digest('hex') };
  if (extra && expected) digests[expected.algorithm] = extra.digest('hex');
  if (expected && digests[expected.algorithm] !== expected.hex) {
    throw new ChecksumMismatchError(
      `${path}: ${expected.algorithm} is ${digests[expected.algorithm]}, expected ${expected.hex}`,
      expected.hex,
      digests[expected.algorithm]!,
    );
  }
  return {
    notModified: false,
    size,
    validators: { etag: validator },
    digests,
    resumedFrom: 0,
    fetched: 0,
    written: 0,
  };
}
