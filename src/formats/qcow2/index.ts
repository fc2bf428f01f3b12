/**
 * The qcow2 format driver: probe by magic (qcow v1 shares it, and gets a clear refusal), open
 * = header, L1 table, snapshot list, then the referenced files through the trust rule.
 */
import { UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource, Image } from '../../image/types.js';
import { type FormatDriver, formatDriver, type OpenContext } from '../registry.js';
import {
  AUTOCLEAR_BITMAPS,
  HEADER_PROBE_BYTES,
  hasQcowMagic,
  parseHeader,
  peekClusterBits,
  type Qcow2Header,
} from './header.js';
import { Qcow2Image } from './image.js';
import { L1Table } from './l1-table.js';
import { l2CacheBytesAt, Qcow2Map } from './mapping.js';
import { readExact } from './reader.js';
import { readBitmaps, readSnapshots } from './snapshots.js';

export { Qcow2Image } from './image.js';

export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  probe: (head) => hasQcowMagic(head),
  open: openQcow2,
};

export async function openQcow2(source: ByteSource, ctx: OpenContext): Promise<Image> {
  const who = source.name;
  const probeLen = Math.min(HEADER_PROBE_BYTES, source.size);
  const probe = await readExact(source, 0, probeLen, 'qcow2 header');
  const bits = peekClusterBits(probe, source.size, who);
  const head = await readExact(source, 0, Math.min(2 ** bits, source.size), 'qcow2 header');
  const header = parseHeader(head, source.size, who);

  const l2Entries = header.clusterSize / (header.extendedL2 ? 16 : 8);
  const l1Count = Math.ceil(header.size / (header.clusterSize * l2Entries));
  // Open for writing: the writer holds the whole L1 table and shares it with the reader's map;
  // otherwise it is read lazily, in pieces.
  // (The writer's modules load only then.)
  const tables =
    ctx.writable && ctx.depth === 0
      ? await (await import('./writable/open.js')).openTables(
          source,
          header,
          await readExact(source, header.l1TableOffset, l1Count * 8, 'L1 table'),
        )
      : undefined;
  const l1 = tables
    ? L1Table.resident(tables.l1)
    : new L1Table(
        (off, length) => readExact(source, off, length, 'L1 table'),
        header.l1TableOffset,
        l1Count,
      );
  // The first piece at open, as before: a small image's whole table, and a bad offset fails here.
  if (l1Count > 0) await l1.entry(0);
  const snapshots = await readSnapshots(source, header);
  const bitmaps =
    header.autoclear & AUTOCLEAR_BITMAPS ? await readBitmaps(source, header) : undefined;
  const opened: { close(): Promise<void> }[] = [];
  try {
    let data = source;
    if (header.dataFile !== undefined) {
      data = await ctx.openReferencedFile(header.dataFile, source, 'data file');
      opened.push(data);
    }
    let backing: Image | undefined;
    if (header.backingFile !== undefined) {
      backing = await ctx.openBacking(header.backingFile, source, backingFormat(header, who));
      opened.push(backing);
    }
    const map = new Qcow2Map(
      header,
      l1,
      tables ? () => tables.fileEnd() : () => source.size,
      header.dataFile !== undefined,
      tables
        ? (off) => tables.table(off)
        : (off) => readExact(source, off, header.clusterSize, 'L2 table'),
      who,
      l2CacheBytesAt(ctx.depth),
    );
    const actualSize = await source.allocatedSize?.();
    const image = new Qcow2Image({
      source,
      data,
      header,
      map,
      backing,
      snapshots,
      bitmaps,
      actualSize,
    });
    if (!tables) return image;
    const { WritableQcow2Image } = await import('./writable/image.js');
    return new WritableQcow2Image(image, tables);
  } catch (err) {
    l1.release();
    await Promise.allSettled(opened.map((o) => o.close()));
    throw err;
  }
}

/** The backing format named in the header, checked against the formats diskpipe reads. */
function backingFormat(header: Qcow2Header, who: string): string | undefined {
  const fmt = header.backingFormat;
  if (fmt === undefined) return undefined;
  if (formatDriver(fmt)) return fmt;
  // qemu calls VHD "vpc".
  if (fmt === 'vpc' && formatDriver('vhd')) return 'vhd';
  throw new UnsupportedFeatureError(
    `${who}: backing file format '${fmt}' is not supported (backing file '${header.backingFile}')`,
  );
}
