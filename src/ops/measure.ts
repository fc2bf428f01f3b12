/**
 * `measure`: how many bytes a new image needs, computed as qemu-img measure does
 * (block/qcow2.c qcow2_measure, block/raw-format.c raw_measure) so that scripts can size a
 * volume before converting into it. `required` counts the clusters that hold data (zero
 * ranges skipped) plus the metadata of a fully allocated image; `fully-allocated` counts every
 * cluster.
 */
import { UsageError } from '../errors.js';
import { MAX_L1_BYTES } from '../formats/qcow2/header.js';
import type { Image } from '../image/types.js';

export interface MeasureOptions {
  format: 'raw' | 'qcow2';
  clusterSize?: number;
  /** 1, 2, 4 ... 64 (default 16). */
  refcountBits?: number;
  extendedL2?: boolean;
  /** qcow2 version 2 ("0.10") or 3 ("1.1", the default). */
  compat?: '0.10' | '1.1';
}

/** Field names as `qemu-img measure --output=json` prints them. */
export interface MeasureResult {
  bitmaps?: number;
  required: number;
  'fully-allocated': number;
}

const SECTOR = 512;

export async function measure(input: Image | number, opts: MeasureOptions): Promise<MeasureResult> {
  const bytes = typeof input === 'number' ? input : input.size;
  const ssize = roundUp(bytes, SECTOR); // qemu sizes images in sectors
  if (opts.format === 'raw') return { required: ssize, 'fully-allocated': ssize };

  const cs = opts.clusterSize ?? 65536;
  const refcountOrder = Math.log2(opts.refcountBits ?? 16);
  const extendedL2 = opts.extendedL2 ?? false;
  if (extendedL2 && cs < 16384) {
    throw new UsageError('extended L2 entries need a cluster size of at least 16K');
  }
  const virtualSize = roundUp(ssize, cs);
  const l2Tables = Math.ceil(virtualSize / cs / (cs / (extendedL2 ? 16 : 8)));
  if (l2Tables * 8 > MAX_L1_BYTES) {
    throw new UsageError('the image size is too large for qcow2 (try a larger cluster size)');
  }
  const data = typeof input === 'number' ? 0 : await dataBytes(input, ssize, cs);
  const full = preallocatedSize(virtualSize, cs, refcountOrder, extendedL2);
  const out: MeasureResult = { required: full - virtualSize + data, 'fully-allocated': full };
  if (typeof input !== 'number' && (opts.compat ?? '1.1') === '1.1') {
    const b = bitmapsSize(input, cs);
    if (b !== undefined) return { bitmaps: b, ...out };
  }
  return out;
}

/** Bytes of the clusters that hold data, walking extents as qemu walks block status. */
async function dataBytes(image: Image, ssize: number, cs: number): Promise<number> {
  let required = 0;
  let pos = 0;
  for await (const e of image.extents(0, image.size)) {
    const end = e.offset + e.length;
    if (end <= pos) continue;
    if (!e.zero) {
      // A data run counts up to the end of its last cluster, from the start of its first.
      const runEnd = Math.min(roundUp(end, cs), roundUp(ssize, cs));
      required += (pos % cs) + (runEnd - pos);
      pos = runEnd;
    } else {
      pos = end;
    }
  }
  return required;
}

/** qcow2_calc_prealloc_size: header, L2 and L1 tables, refcounts and every data cluster. */
function preallocatedSize(
  virtualSize: number,
  cs: number,
  refcountOrder: number,
  extendedL2: boolean,
): number {
  const l2e = extendedL2 ? 16 : 8;
  let meta = cs; // header
  const nl2e = roundUp(virtualSize / cs, cs / l2e);
  meta += nl2e * l2e;
  const nl1e = roundUp((nl2e * l2e) / cs, cs / 8);
  meta += nl1e * 8;
  meta += refcountMetadataSize((meta + virtualSize) / cs, cs, refcountOrder);
  return meta + virtualSize;
}

/** qcow2_refcount_metadata_size: refcount blocks and table that cover themselves too. */
function refcountMetadataSize(clusters: number, cs: number, refcountOrder: number): number {
  const perTableCluster = cs / 8;
  const perBlock = (cs * 8) / 2 ** refcountOrder;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  do {
    last = n;
    blocks = Math.ceil((clusters + table + blocks) / perBlock);
    table = Math.ceil(blocks / perTableCluster);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * cs;
}

/**
 * Space for the source's persistent bitmaps, reported only when the source can have them
 * (qcow2 v3), as qemu does; undefined otherwise.
 */
function bitmapsSize(image: Image, cs: number): number | undefined {
  const d = image.describe?.();
  if (image.format !== 'qcow2' || d?.specific?.compat !== '1.1') return undefined;
  const bitmaps = (d.specific.bitmaps ?? []) as Array<{ name: string; granularity: number }>;
  let size = 0;
  let dir = 0;
  for (const b of bitmaps) {
    const bits = Math.ceil(image.size / b.granularity);
    const clusters = Math.ceil(Math.ceil(bits / 8) / cs);
    size += clusters * cs + roundUp(clusters * 8, cs);
    dir += roundUp(24 + new TextEncoder().encode(b.name).length, 8);
  }
  return size + roundUp(dir, cs);
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
