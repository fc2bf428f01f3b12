/**
 * `resize`: changes an image's virtual size in place, as qemu-img resize. Raw files are
 * truncated; qcow2 images get a new size in the header, and a larger L1 table when the new
 * size needs one. Shrinking always needs `shrink: true`.
 */
import { stat } from 'node:fs/promises';
import { CorruptImageError, ioError, UnsupportedFeatureError, UsageError } from '../errors.js';
import {
  AUTOCLEAR_BITMAPS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  MAX_L1_BYTES,
} from '../formats/qcow2/header.js';
import { probeSourceFormat } from '../formats/registry.js';
import '../formats/index.js';
import type { TrustOptions } from '../image/trust.js';
import { LocalFile } from '../io/file.js';
import { lockForInPlaceEdit } from '../io/qemu-locks.js';
import { refuseReadOnlyImage } from '../io/read-only-image.js';
import { openImage } from '../open.js';
import { refuseNonLocal } from './local-path.js';
import { readHeader, readZeroFilled } from './qcow2/file.js';
import { refuseMisplacedL1 } from './qcow2/l1-placement.js';
import { StoredRefcounts } from './qcow2/refcounts.js';
import { shrinkQcow2 } from './qcow2/shrink.js';

/** A new size: absolute, or relative to the current one (`+1G`, `-512M`). */
export interface SizeChange {
  sign: '' | '+' | '-';
  bytes: number;
}

export interface ResizeOptions {
  /** raw or qcow2; probed when absent. */
  format?: string;
  /** Allow a smaller size (data past the new end is lost). */
  shrink?: boolean;
  /** The trust rule for opening a qcow2 image's backing file (to learn its size). */
  trust?: TrustOptions;
}

export interface ResizeResult {
  format: 'raw' | 'qcow2';
  oldSize: number;
  newSize: number;
}

export async function resizeImage(
  path: string,
  change: SizeChange,
  opts: ResizeOptions = {},
): Promise<ResizeResult> {
  refuseNonLocal(path, 'resize');
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    throw ioError(err, `cannot open ${path}`);
  }
  if (!st.isFile()) throw new UsageError(`${path}: only regular files can be resized`);
  const file = await LocalFile.open(path, 'r+');
  try {
    refuseReadOnlyImage(file.fd, path);
    lockForInPlaceEdit(file.fd, path);
    const format = await formatOf(file, opts.format);
    const oldSize = format === 'raw' ? file.size : (await readHeader(file)).size;
    const newSize = target(oldSize, change);
    if (newSize < oldSize && !opts.shrink) {
      throw new UsageError(
        'use --shrink to make an image smaller (data past the new end is deleted)',
      );
    }
    if (format === 'raw') {
      if (newSize !== oldSize) await file.truncate(newSize);
    } else {
      if (newSize > oldSize) await refuseExposingBacking(path, oldSize, opts.trust ?? {});
      await resizeQcow2(file, newSize);
    }
    await file.sync();
    return { format, oldSize, newSize };
  } finally {
    await file.close();
  }
}

/**
 * Growing an overlay over a larger backing file would let the backing file's data show
 * through in the new range; qemu writes zero clusters there, which diskpipe cannot do yet.
 */
async function refuseExposingBacking(path: string, oldSize: number, trust: TrustOptions) {
  // Our own lock for the edit is held on the image: not another program writing it.
  const image = await openImage(path, { ...trust, format: 'qcow2', refuseWritten: false });
  try {
    const backing = image.backing;
    if (backing && backing.size > oldSize) {
      throw new UnsupportedFeatureError(
        `${path}: its backing file (${backing.size} bytes) is larger than the image (${oldSize} bytes); growing it would expose the backing file's data, and writing zeroes there is not implemented (qemu-img resize can)`,
      );
    }
  } finally {
    await image.close();
  }
}

function target(oldSize: number, change: SizeChange): number {
  const n =
    change.sign === '+'
      ? oldSize + change.bytes
      : change.sign === '-'
        ? oldSize - change.bytes
        : change.bytes;
  if (n <= 0) throw new UsageError('the new image size must be positive');
  if (!Number.isSafeInteger(n)) throw new UsageError('the new image size is too large');
  return n;
}

async function formatOf(file: LocalFile, forced: string | undefined): Promise<'raw' | 'qcow2'> {
  const name = forced ?? (await probeSourceFormat(file)).name;
  if (name === 'raw' || name === 'qcow2') return name;
  throw new UnsupportedFeatureError(
    `${file.name}: resizing ${name} images is not supported (raw or qcow2)`,
  );
}

async function resizeQcow2(file: LocalFile, newSize: number): Promise<void> {
  const h = await readHeader(file);
  const who = file.name;
  if (newSize % 512 !== 0)
    throw new UsageError('the new size of a qcow2 image must be a multiple of 512');
  if (h.incompatible & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT)) {
    throw new CorruptImageError(
      `${who}: the image is marked ${h.incompatible & INCOMPAT_CORRUPT ? 'corrupt' : 'dirty'}; repair it first (qemu-img check -r all)`,
    );
  }
  if (h.dataFile !== undefined) {
    throw new UnsupportedFeatureError(
      `${who}: resizing images with an external data file is not supported`,
    );
  }
  if (h.autoclear & AUTOCLEAR_BITMAPS && (h.bitmaps?.count ?? 0) > 0) {
    // Their tables are sized for the old size; qemu would no longer open the image.
    throw new UnsupportedFeatureError(
      `${who}: resizing images with persistent dirty bitmaps is not implemented (remove them with qemu-img bitmap --remove, or use qemu-img resize)`,
    );
  }
  if (newSize !== h.size) await refuseMisplacedL1(who, h, new StoredRefcounts(file, h));
  if (newSize < h.size) {
    if (h.nbSnapshots > 0) {
      // Their L2 tables and clusters are shared with the active layer.
      throw new UnsupportedFeatureError(
        `${who}: shrinking images with internal snapshots is not implemented (qemu-img resize --shrink can)`,
      );
    }
    await shrinkQcow2(file, h, newSize, () =>
      writeSizeAndL1(file, newSize, h.l1Size, h.l1TableOffset),
    );
    return;
  }
  if (newSize === h.size) return;
  const cs = h.clusterSize;
  const l2Entries = cs / (h.extendedL2 ? 16 : 8);
  const needed = Math.ceil(newSize / (cs * l2Entries));
  if (needed * 8 > MAX_L1_BYTES) {
    throw new UsageError(
      `${who}: ${newSize} bytes is larger than qcow2 allows with ${cs}-byte clusters`,
    );
  }
  const write = (buf: Uint8Array, off: number) => file.write(buf, off);
  let l1Size = h.l1Size;
  let l1Offset = h.l1TableOffset;
  const oldClusters = Math.ceil((h.l1Size * 8) / cs);
  if (needed > h.l1Size) {
    if (needed * 8 <= oldClusters * cs) {
      // The entries fit in the clusters the table already owns: clear them in place.
      await write(new Uint8Array((needed - h.l1Size) * 8), h.l1TableOffset + h.l1Size * 8);
    } else {
      // A new table in new clusters; the old one is freed once the header points away.
      const refs = new StoredRefcounts(file, h);
      const newClusters = Math.ceil((needed * 8) / cs);
      const first = await refs.allocate(Math.ceil(file.size / cs), newClusters);
      l1Offset = first * cs;
      const table = new Uint8Array(newClusters * cs);
      table.set(await readZeroFilled(file, h.l1TableOffset, h.l1Size * 8));
      await write(table, l1Offset);
      await refs.writeBlocks(write);
      await file.sync();
      await refs.publishNewBlocks(write);
      await file.sync();
      await writeSizeAndL1(file, newSize, needed, l1Offset);
      await file.sync();
      // A crash before this point leaves only leaked clusters, never a corrupt image.
      for (let i = 0; i < oldClusters; i++) await refs.add(h.l1TableOffset / cs + i, -1n);
      await refs.writeBlocks(write);
      return;
    }
    l1Size = needed;
  }
  await file.sync();
  await writeSizeAndL1(file, newSize, l1Size, l1Offset);
}

/** Header bytes 24-47 (size, crypt method 0, L1 size, L1 offset) in one write. */
async function writeSizeAndL1(file: LocalFile, size: number, l1Size: number, l1Offset: number) {
  const b = new Uint8Array(24);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, BigInt(size));
  dv.setUint32(12, l1Size);
  dv.setBigUint64(16, BigInt(l1Offset));
  await file.write(b, 24);
}
