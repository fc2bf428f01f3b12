/**
 * disk create: hand a VM its own disk from a cached image — a reflink clone of the cached raw
 * file (a sparse copy where the filesystem cannot share blocks), or a qcow2 overlay whose
 * backing file is the cached raw file, which pins the entry against rm/prune.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, stat, truncate } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ioError, UsageError } from '../errors.js';
import { writeJsonDurably } from '../io/json-file.js';
import { cloneFile } from '../ops/clone.js';
import { createImage } from '../ops/create.js';
import { CacheLayout } from './layout.js';
import { type PullOptions, pull, sourceUrl } from './pull.js';
import { type CacheEntry, CacheIndex, now, type Pin } from './records.js';

export interface DiskOptions
  extends Pick<PullOptions, 'cacheDir' | 'offline' | 'onProgress' | 'onWait' | 'signal'> {
  format?: 'raw' | 'qcow2';
  /** Virtual size of the new disk; at least the image's size (default: the image's size). */
  size?: number | undefined;
}

export interface DiskResult {
  path: string;
  format: 'raw' | 'qcow2';
  /** How the disk was made. */
  strategy: 'reflink' | 'sparse-copy' | 'overlay';
  contentDigest: string;
  virtualSize: number;
  /** Bytes of new disk space the disk took (shared reflinked blocks are not counted). */
  bytesWritten: number;
  /** Bytes the new file occupies on disk (st_blocks × 512; reflinked blocks count here). */
  allocatedSize: number;
}

/** Finds the cache entry for `from`: a content digest (prefix), a cached URL, or a URL to pull. */
async function resolveFrom(
  index: CacheIndex,
  from: string,
  opts: DiskOptions,
): Promise<CacheEntry> {
  try {
    return await index.resolve(/^[0-9a-f]{8,64}$/i.test(from) ? from : sourceUrl(from));
  } catch (err) {
    if (/^[0-9a-f]{8,64}$/i.test(from)) throw err;
  }
  await pull(from, opts);
  return index.resolve(sourceUrl(from));
}

export async function createDisk(
  from: string,
  dest: string,
  opts: DiskOptions = {},
): Promise<DiskResult> {
  const layout = new CacheLayout(opts.cacheDir);
  await layout.ensure();
  const index = new CacheIndex(layout);
  const entry = await resolveFrom(index, from, opts);
  const blobPath = layout.blobPath(entry.blob.contentDigest);
  const size = opts.size ?? entry.blob.virtualSize;
  if (size < entry.blob.virtualSize) {
    throw new UsageError(
      `--size ${size} is smaller than the image (${entry.blob.virtualSize} bytes); disks can only grow`,
    );
  }
  const path = resolve(dest);
  const format = opts.format ?? 'raw';
  let strategy: DiskResult['strategy'];
  let bytesWritten: number;
  if (format === 'raw') {
    const r = await cloneFile(blobPath, path);
    await chmod(path, 0o644); // the cached file is read-only; the VM's disk is not
    if (size > entry.blob.virtualSize) await truncate(path, size);
    strategy = r.strategy;
    bytesWritten = r.bytesWritten;
  } else if (format === 'qcow2') {
    await createImage(path, {
      format: 'qcow2',
      backing: blobPath,
      backingFormat: 'raw',
      size,
      trust: { cacheDir: layout.root },
    });
    await pin(layout, entry.blob.contentDigest, path);
    strategy = 'overlay';
    bytesWritten = (await stat(path)).size;
  } else {
    throw new UsageError(`disk format '${format}' is not supported (raw or qcow2)`);
  }
  const time = now();
  await index.saveBlob({ ...entry.blob, lastUsed: time });
  const st = await stat(path).catch((err) => {
    throw ioError(err, `cannot stat ${path}`);
  });
  return {
    path,
    format,
    strategy,
    contentDigest: entry.blob.contentDigest,
    virtualSize: size,
    bytesWritten,
    allocatedSize: st.blocks * 512,
  };
}

/** Records that the disk at `path` uses the blob, so rm/prune keep it while the disk exists. */
async function pin(layout: CacheLayout, digest: string, path: string): Promise<void> {
  const dir = layout.pinDir(digest);
  await mkdir(dir, { recursive: true });
  const key = createHash('sha256').update(path).digest('hex');
  await writeJsonDurably(`${dir}/${key}.json`, { version: 1, path, created: now() } satisfies Pin);
}
