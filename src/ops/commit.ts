/**
 * `commit [-b BASE] IMAGE`: writes the data of a qcow2 overlay (and of every layer between it
 * and BASE) into BASE in place, so BASE then holds the guest content IMAGE showed. BASE is
 * IMAGE's backing file unless -b names a deeper one; raw and qcow2 bases are written (qcow2
 * through the in-place writer). A base inside the diskpipe cache is refused: cache blobs are
 * shared by every disk made from them. IMAGE itself is left as it was (qemu-img commit -d):
 * it still reads the same, and can be deleted.
 */
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { NotCapableError, UnsupportedFeatureError, UsageError } from '../errors.js';
import type { TrustOptions } from '../image/trust.js';
import type { Image } from '../image/types.js';
import { defaultCacheDir } from '../io/cache-dir.js';
import { openImage } from '../open.js';
import { copyRanges, type Range } from './copy-ranges.js';

export interface CommitOptions {
  /** The image to commit into (default: IMAGE's backing file). */
  base?: string;
  trust?: TrustOptions;
  /** The diskpipe cache whose files may not be written (default: the usual location). */
  cacheDir?: string;
}

export interface CommitResult {
  /** The file written. */
  base: string;
  /** Guest bytes written into it (data and zeroes). */
  bytesWritten: number;
}

export async function commitImage(path: string, opts: CommitOptions = {}): Promise<CommitResult> {
  const top = await openImage(path, { ...opts.trust });
  try {
    if (top.format !== 'qcow2' || !top.mapping) {
      throw new UnsupportedFeatureError(`${path}: commit works on qcow2 overlays only`);
    }
    const chain = chainOf(top);
    if (chain.length < 2) throw new UsageError(`${path} has no backing file to commit into`);
    const depth = opts.base === undefined ? 1 : findBase(chain, opts.base, path);
    const base = chain[depth]!;
    const basePath = realpathSync(base.source!.path!);
    checkWritable(basePath, opts.cacheDir);
    if (base.size < top.size) {
      throw new UnsupportedFeatureError(
        `${basePath} (${base.size} bytes) is smaller than ${path} (${top.size} bytes); resize it first`,
      );
    }
    // Everything the layers above BASE allocate.
    const ranges: Range[] = [];
    for await (const e of top.mapping(0, top.size)) {
      if (e.present && e.depth < depth)
        ranges.push({ offset: e.offset, length: e.length, zero: e.zero });
    }
    const target = await openImage(basePath, {
      ...opts.trust,
      format: base.format === 'vhd' ? 'vhd' : base.format,
      writable: true,
    });
    try {
      if (!target.capabilities.write) {
        throw new NotCapableError(`${basePath} (${base.format}) cannot be written in place`);
      }
      const bytesWritten = await copyRanges(top, target, ranges);
      await target.flush?.();
      return { base: basePath, bytesWritten };
    } finally {
      await target.close();
    }
  } finally {
    await top.close();
  }
}

function chainOf(top: Image): Image[] {
  const chain: Image[] = [];
  for (let i: Image | undefined = top; i; i = i.backing) chain.push(i);
  return chain;
}

/** The depth of BASE in the chain (1 = the backing file). */
function findBase(chain: Image[], base: string, path: string): number {
  let want: string;
  try {
    want = realpathSync(base);
  } catch (err) {
    throw new UsageError(`-b ${base}: ${(err as NodeJS.ErrnoException).code ?? 'not found'}`);
  }
  for (let d = 1; d < chain.length; d++) {
    const p = chain[d]!.source?.path;
    if (p !== undefined && realpathSync(p) === want) return d;
  }
  throw new UsageError(`${base} is not in the backing chain of ${path}`);
}

/** Refuses a base in the diskpipe cache, or one that is read-only (mode bits, even for root). */
function checkWritable(path: string, cacheDir: string | undefined): void {
  let root = resolve(cacheDir ?? defaultCacheDir());
  try {
    root = realpathSync(root);
  } catch {
    // no cache yet: nothing can live in it
  }
  if (path.startsWith(root + sep)) {
    throw new NotCapableError(
      `${path} lives in the diskpipe cache (${root}), shared by every disk made from it; commit into a copy instead`,
    );
  }
  const st = statSync(path);
  if (!st.isFile()) throw new NotCapableError(`${path} is not a regular file`);
  let writable = (st.mode & 0o222) !== 0;
  try {
    accessSync(path, constants.W_OK);
  } catch {
    writable = false;
  }
  if (!writable) throw new NotCapableError(`${path} is read-only; commit refuses to change it`);
}
