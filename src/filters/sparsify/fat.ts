/**
 * FAT12/16/32 free space from the file allocation table: a cluster is free only when every
 * FAT copy says so. A volume marked dirty (the boot sector's dirty flag, or the clean-shutdown
 * and no-error bits of FAT entry 1) passes through. The FAT is read in bounded pieces through a
 * small cache. Facts from Microsoft's FAT specification (fatgen103).
 */

import { CorruptImageError } from '../../errors.js';
import { view } from '../../io/bytes.js';
import { SingleFlightLru } from '../../io/single-flight-lru.js';
import { ascii, type PartReader } from './part-reader.js';
import type { FreeSpace, Range, Verdict } from './types.js';

const PIECE = 64 * 1024;
const MAX_FATS = 4;

interface Layout {
  kind: 12 | 16 | 32;
  fatOffset: number;
  fatBytes: number;
  fats: number;
  dataOffset: number;
  clusterBytes: number;
  clusters: number;
}

/** True when the sector looks like a FAT boot sector (used to tell a whole-disk FAT from an MBR). */
export function looksLikeFat(sector: Uint8Array): boolean {
  return sector.length >= 512 && parseBpb(sector) !== undefined;
}

function parseBpb(bs: Uint8Array): Layout | undefined {
  const dv = view(bs);
  if (dv.getUint16(510, true) !== 0xaa55) return undefined;
  if (bs[0] !== 0xeb && bs[0] !== 0xe9) return undefined;
  const bps = dv.getUint16(0x0b, true);
  const spc = bs[0x0d]!;
  const reserved = dv.getUint16(0x0e, true);
  const fats = bs[0x10]!;
  const rootEntries = dv.getUint16(0x11, true);
  const total16 = dv.getUint16(0x13, true);
  const media = bs[0x15]!;
  const fat16Size = dv.getUint16(0x16, true);
  const total32 = dv.getUint32(0x20, true);
  const fatSize = fat16Size || dv.getUint32(0x24, true);
  const total = total16 || total32;
  if (![512, 1024, 2048, 4096].includes(bps)) return undefined;
  if (spc === 0 || (spc & (spc - 1)) !== 0) return undefined;
  if (reserved === 0 || fats === 0 || fats > MAX_FATS || fatSize === 0 || total === 0)
    return undefined;
  if (media !== 0xf0 && media < 0xf8) return undefined;
  const rootSectors = Math.ceil((rootEntries * 32) / bps);
  const dataSector = reserved + fats * fatSize + rootSectors;
  if (dataSector >= total) return undefined;
  const clusters = Math.floor((total - dataSector) / spc);
  const kind = clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32;
  if (kind === 32 && (fat16Size !== 0 || rootEntries !== 0)) return undefined;
  if (kind !== 32 && fat16Size === 0) return undefined;
  const entryBits = kind === 12 ? 12 : kind === 16 ? 16 : 32;
  const fatBytes = fatSize * bps;
  if (Math.ceil(((clusters + 2) * entryBits) / 8) > fatBytes) return undefined;
  return {
    kind,
    fatOffset: reserved * bps,
    fatBytes,
    fats,
    dataOffset: dataSector * bps,
    clusterBytes: spc * bps,
    clusters,
  };
}

export async function probeFat(part: PartReader): Promise<Verdict | undefined> {
  if (part.length < 512) return undefined;
  const bs = await part.bytes(0, 512);
  const layout = parseBpb(bs);
  if (!layout) return undefined;
  const name = `fat${layout.kind}`;
  const pass = (reason: string): Verdict => ({ kind: 'pass', filesystem: name, reason });
  const dv = view(bs);
  const total = dv.getUint16(0x13, true) || dv.getUint32(0x20, true);
  if (total * dv.getUint16(0x0b, true) > part.length) {
    return pass('the filesystem is larger than its partition');
  }
  // The boot sector's "reserved" byte carries Linux's and Windows' dirty flag.
  if (bs[layout.kind === 32 ? 0x41 : 0x25]! & 1) return pass('dirty bit set');
  if (ascii(bs, 3, 8).startsWith('EXFAT') || ascii(bs, 3, 8).startsWith('NTFS')) return undefined;
  const space = new FatSpace(part, layout);
  const media = bs[0x15]!;
  const e0 = await space.entry(0, 0);
  if ((e0 & 0xff) !== media) return pass('FAT entry 0 does not match the media byte');
  const e1 = await space.entry(1, 0);
  if (layout.kind === 16 && (e1 & 0xc000) !== 0xc000) return pass('dirty bit set in the FAT');
  if (layout.kind === 32 && (e1 & 0x0c000000) !== 0x0c000000)
    return pass('dirty bit set in the FAT');
  return { kind: 'sparsify', filesystem: name, space };
}

class FatSpace implements FreeSpace {
  private readonly pieces = new SingleFlightLru<string, Uint8Array>(16);

  constructor(
    private readonly part: PartReader,
    private readonly l: Layout,
  ) {}

  /** FAT entry `cluster` of copy `copy`. */
  async entry(cluster: number, copy: number): Promise<number> {
    const at = this.entryOffset(cluster);
    const piece = await this.piece(copy, Math.floor(at / PIECE));
    return this.decode(piece, at % PIECE, cluster);
  }

  async *free(from: number, to: number): AsyncIterable<Range> {
    const { dataOffset, clusterBytes, clusters } = this.l;
    const first = Math.max(0, Math.ceil((from - dataOffset) / clusterBytes));
    const end = Math.min(clusters, Math.floor((to - dataOffset) / clusterBytes));
    let run: Range | undefined;
    for (let c = first; c < end; ) {
      // Clusters are numbered from 2; one piece of each copy answers a stretch of them.
      const at = this.entryOffset(c + 2);
      const index = Math.floor(at / PIECE);
      let copies: Uint8Array[];
      try {
        copies = await Promise.all(
          Array.from({ length: this.l.fats }, (_, k) => this.piece(k, index)),
        );
      } catch (err) {
        if (!(err instanceof CorruptImageError)) throw err;
        if (run) yield run;
        return;
      }
      for (; c < end && Math.floor(this.entryOffset(c + 2) / PIECE) === index; c++) {
        const off = this.entryOffset(c + 2) % PIECE;
        const free = copies.every((p) => this.decode(p, off, c + 2) === 0);
        const start = dataOffset + c * clusterBytes;
        if (!free) {
          if (run) yield run;
          run = undefined;
        } else if (run && run.end === start) {
          run.end += clusterBytes;
        } else {
          if (run) yield run;
          run = { start, end: start + clusterBytes };
        }
      }
    }
    if (run) yield run;
  }

  private entryOffset(cluster: number): number {
    return this.l.kind === 12 ? Math.floor((cluster * 3) / 2) : (cluster * this.l.kind) / 8;
  }

  private decode(piece: Uint8Array, off: number, cluster: number): number {
    if (this.l.kind === 32) {
      return (
        (piece[off]! | (piece[off + 1]! << 8) | (piece[off + 2]! << 16) | (piece[off + 3]! << 24)) &
        0x0fffffff
      );
    }
    const v = piece[off]! | (piece[off + 1]! << 8);
    if (this.l.kind === 16) return v;
    return cluster & 1 ? v >> 4 : v & 0xfff;
  }

  /** Piece `index` of FAT copy `copy`, with a few bytes more so a FAT12 entry never straddles. */
  private piece(copy: number, index: number): Promise<Uint8Array> {
    return this.pieces.get(`${copy}:${index}`, async () => {
      const start = index * PIECE;
      const length = Math.min(PIECE + 4, this.l.fatBytes - start);
      const buf = new Uint8Array(PIECE + 4);
      buf.set(await this.part.bytes(this.l.fatOffset + copy * this.l.fatBytes + start, length));
      return buf;
    });
  }
}
