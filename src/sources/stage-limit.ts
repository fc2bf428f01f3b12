/**
 * How many bytes staging may write for a format found inside a compressed wrapper. An image
 * can only need so many host bytes for the virtual size its header declares (data, tables,
 * some metadata); a stream that goes on past that is a decompression bomb, not an image. The
 * bound is read from the header's fixed fields alone, before any byte is staged, and combined
 * with the user's --max-staged / DISKPIPE_MAX_STAGED limit (the smaller one wins).
 */
import { UsageError } from '../errors.js';

export interface StageLimitOptions {
  /** Most bytes ever staged for one input (the CLI: --max-staged, else DISKPIPE_MAX_STAGED). */
  maxStaged?: number;
}

export interface StageLimit {
  /** Staging stops with an error once the stream goes past this many bytes. */
  readonly bytes: number;
  /** Why this limit, for the error message ("a qcow2 image of 1048576 bytes cannot need more"). */
  readonly reason: string;
  /** The user's limit (which the user can raise), not the format's. */
  readonly user: boolean;
}

/** Header, extensions, descriptors, snapshot and bitmap directories: generous headroom. */
const METADATA_SLACK = 16 * 1024 * 1024;
/** Per internal snapshot: its table entry (name, id, extra data) and its L1 table's rounding. */
const PER_SNAPSHOT = 128 * 1024;

/** The staging limit for a stream that starts with `head` (undefined: no bound at all). */
export function stageLimit(head: Uint8Array, opts: StageLimitOptions): StageLimit | undefined {
  const user = userLimit(opts);
  const format = formatBound(head);
  if (format && (user === undefined || format.bytes < user)) return format;
  if (user === undefined) return undefined;
  return { bytes: user, reason: 'the --max-staged limit (DISKPIPE_MAX_STAGED)', user: true };
}

function userLimit(opts: StageLimitOptions): number | undefined {
  const n = opts.maxStaged;
  if (n !== undefined && !(Number.isSafeInteger(n) && n >= 0))
    throw new UsageError(`invalid maxStaged ${n}: a whole number of bytes`);
  return n;
}

function formatBound(head: Uint8Array): StageLimit | undefined {
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const u32 = (at: number, le = false) => (at + 4 <= head.length ? dv.getUint32(at, le) : 0);
  const u64 = (at: number, le = false) =>
    at + 8 <= head.length ? Number(dv.getBigUint64(at, le)) : Number.NaN;
  const found = (format: string, size: number, bytes: number): StageLimit | undefined =>
    Number.isSafeInteger(size) && Number.isFinite(bytes)
      ? {
          bytes: Math.min(Math.ceil(bytes), Number.MAX_SAFE_INTEGER),
          reason: `a ${format} image of ${size} bytes cannot need more`,
          user: false,
        }
      : undefined;

  if (u32(0) === 0x514649fb) return qcow2Bound(u32, u64, found);
  if (u32(0, true) === 0x564d444b) {
    // VMDK sparse extent ("KDMV"): capacity and grain size in sectors.
    const size = u64(12, true) * 512;
    const grain = Math.max(u64(20, true), 1) * 512;
    const grains = Math.ceil(size / grain);
    // Stream-optimized grains carry a marker, deflate's worst-case growth and sector padding;
    // grain tables may be stored twice (redundant tables).
    return found('vmdk', size, size * 1.01 + grains * (1024 + 8) + METADATA_SLACK);
  }
  if (u32(0x40, true) === 0xbeda107f) {
    // VDI: disk size, block size, extra bytes per block, offset of the data area.
    const size = u64(0x170, true);
    const block = Math.max(u32(0x178, true), 512);
    const blocks = Math.ceil(size / block);
    const data = Math.min(u32(0x158, true), METADATA_SLACK);
    return found('vdi', size, blocks * (block + u32(0x17c, true)) + data + METADATA_SLACK);
  }
  if (u32(0, true) === 0x00444551) {
    // QED: cluster size, table size (clusters), header size (clusters), image size.
    const cluster = Math.max(u32(4, true), 512);
    const size = u64(48, true);
    const clusters = Math.ceil(size / cluster);
    const tables = Math.ceil((clusters * 8) / cluster) * cluster * 2;
    return found('qed', size, size + tables + u32(12, true) * cluster + METADATA_SLACK);
  }
  if (
    head.length >= 1024 &&
    asText(head, 0, 8) === 'conectix' &&
    asText(head, 512, 8) === 'cxsparse'
  ) {
    // Dynamic VHD: the blocks its table can address, each with its sector bitmap.
    const size = u64(48);
    const entries = u32(512 + 28);
    const block = u32(512 + 32);
    const bitmap = Math.ceil(block / 512 / 8 / 512) * 512;
    return found('vpc', size, entries * (block + bitmap + 4) + METADATA_SLACK);
  }
  return undefined;
}

type Reader = (at: number, le?: boolean) => number;

function qcow2Bound(
  u32: Reader,
  u64: Reader,
  found: (format: string, size: number, bytes: number) => StageLimit | undefined,
): StageLimit | undefined {
  const bits = u32(20);
  if (bits < 9 || bits > 21) return undefined;
  const cluster = 2 ** bits;
  const size = u64(24);
  const snapshots = u32(60);
  const v3 = u32(4) === 3;
  const refcountBits = v3 ? 2 ** Math.min(u32(96), 6) : 16;
  const extendedL2 = v3 && (u32(76) & (1 << 4)) !== 0;
  const layers = 1 + snapshots;
  const clusters = Math.ceil(size / cluster);
  const l2Tables = Math.ceil((clusters * (extendedL2 ? 16 : 8)) / cluster);
  const l1 = Math.ceil((l2Tables * 8) / cluster) * cluster;
  const mapped =
    layers * (size + l2Tables * cluster + l1) + METADATA_SLACK + snapshots * PER_SNAPSHOT;
  // Refcount blocks for every host cluster (and the table pointing at them), counted twice:
  // a grown refcount structure may leave its old copy behind.
  const refcounts = (Math.ceil(mapped / cluster) * refcountBits) / 8;
  return found('qcow2', size, mapped + 2 * (refcounts + (refcounts / cluster) * 8 + cluster));
}

function asText(head: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...head.subarray(at, at + n));
}
