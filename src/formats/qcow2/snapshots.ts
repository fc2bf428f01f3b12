/**
 * The internal snapshot table (listed by `info`; diskpipe reads only the active layer) and the
 * persistent bitmap directory (noted by `info`, never used for reading).
 */

import { CorruptImageError } from '../../errors.js';
import type { ByteSource, SnapshotInfo } from '../../image/types.js';
import { view } from '../../io/bytes.js';
import type { Qcow2Header } from './header.js';
import { Cursor } from './reader.js';

/** qemu's limits: 1 KiB per entry on average, 1 KiB of extra data per entry. */
const MAX_SNAPSHOT_TABLE = 1024 * 65536;
const MAX_EXTRA_DATA = 1024;

export async function readSnapshots(
  source: ByteSource,
  header: Qcow2Header,
): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  if (header.nbSnapshots === 0) return out;
  const who = source.name;
  const cur = new Cursor(source, header.snapshotsOffset, MAX_SNAPSHOT_TABLE, 'snapshot table');
  for (let i = 0; i < header.nbSnapshots; i++) {
    const h = view(await cur.take(40));
    const idLen = h.getUint16(12);
    const nameLen = h.getUint16(14);
    const extraLen = h.getUint32(36);
    if (extraLen > MAX_EXTRA_DATA) {
      throw new CorruptImageError(`${who}: snapshot ${i} has too much extra data (${extraLen})`);
    }
    const extra = view(await cur.take(extraLen));
    const id = decode(await cur.take(idLen));
    const name = decode(await cur.take(nameLen));
    cur.skip((8 - ((40 + extraLen + idLen + nameLen) % 8)) % 8);
    const info: SnapshotInfo = {
      id,
      name,
      vmStateSize: extraLen >= 8 ? safe(extra.getBigUint64(0)) : h.getUint32(32),
      dateSec: h.getUint32(16),
      dateNsec: h.getUint32(20),
      vmClockNsec: safe(h.getBigUint64(24)),
    };
    if (extraLen >= 24) {
      const icount = extra.getBigInt64(16);
      if (icount >= 0n) info.icount = safe(icount);
    }
    out.push(info);
  }
  return out;
}

export interface BitmapInfo {
  name: string;
  granularity: number;
  flags: string[];
}

const MAX_BITMAP_DIRECTORY = 1024 * 65535;

/** Names, granularity and flags of the persistent dirty bitmaps, as `qemu-img info` lists them. */
export async function readBitmaps(
  source: ByteSource,
  header: Qcow2Header,
): Promise<BitmapInfo[] | undefined> {
  const ext = header.bitmaps;
  if (!ext) return undefined;
  const who = source.name;
  if (ext.count === 0 || ext.count > 65535) {
    throw new CorruptImageError(`${who}: bad number of bitmaps (${ext.count})`);
  }
  if (ext.directorySize > MAX_BITMAP_DIRECTORY || ext.directoryOffset % header.clusterSize) {
    throw new CorruptImageError(`${who}: bad bitmap directory`);
  }
  const cur = new Cursor(source, ext.directoryOffset, ext.directorySize, 'bitmap directory');
  const out: BitmapInfo[] = [];
  for (let i = 0; i < ext.count; i++) {
    const h = view(await cur.take(24));
    const flagBits = h.getUint32(12);
    const granularityBits = h.getUint8(17);
    const nameLen = h.getUint16(18);
    const extraLen = h.getUint32(20);
    if (granularityBits > 63 || extraLen > MAX_BITMAP_DIRECTORY) {
      throw new CorruptImageError(`${who}: bad bitmap directory entry ${i}`);
    }
    cur.skip(extraLen);
    const name = decode(await cur.take(nameLen));
    cur.skip((8 - ((24 + extraLen + nameLen) % 8)) % 8);
    const flags: string[] = [];
    if (flagBits & 1) flags.push('in-use');
    if (flagBits & 2) flags.push('auto');
    out.push({ name, granularity: 2 ** granularityBits, flags });
  }
  return out;
}

function decode(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

function safe(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}
