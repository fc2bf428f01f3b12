/**
 * qcow2 L1 tables, read lazily in pieces through one bounded cache that every open qcow2
 * image shares. A 128 GiB image with 512-byte clusters has a 32 MiB L1 table; a backing chain
 * of 65 of them read whole at open would hold 2 GiB. In pieces, only the parts of each table a
 * read walks through are loaded, and all layers together stay within L1_CACHE_BYTES.
 */

/** Memory for L1 pieces of all open images together. */
export const L1_CACHE_BYTES = 8 * 1024 * 1024;
/** One piece: 8192 entries, which map 4 GiB of guest space with 512-byte clusters. */
export const L1_PIECE_BYTES = 64 * 1024;

/** What the shared cache holds and has loaded (tests count bytes instead of measuring RSS). */
export const l1Stats = { loadedBytes: 0, residentBytes: 0, peakResidentBytes: 0 };

interface Piece {
  view: Promise<DataView>;
  bytes: number;
}

/** The pieces of all L1 tables, least recently used first (Map keeps insertion order). */
const pieces = new Map<string, Piece>();

function evictTo(budget: number): void {
  for (const [key, piece] of pieces) {
    if (l1Stats.residentBytes <= budget) return;
    pieces.delete(key);
    l1Stats.residentBytes -= piece.bytes;
  }
}

let nextTable = 0;

export class L1Table {
  private readonly id = nextTable++;

  constructor(
    /** Reads `length` bytes at `offset` of the image file (exactly, or throws). */
    private readonly read: (offset: number, length: number) => Promise<Uint8Array>,
    private readonly offset: number,
    /** Entries the table has for the virtual size. */
    readonly entries: number,
    /** The whole table, when it is held in memory instead (see resident()). */
    private readonly whole?: DataView,
  ) {}

  /**
   * A table held whole in memory: an image open for writing edits `bytes` in place, and reads
   * through this table see those edits at once.
   */
  static resident(bytes: Uint8Array): L1Table {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const none = () => Promise.reject(new Error('a resident L1 table is never read'));
    return new L1Table(none, 0, Math.floor(bytes.byteLength / 8), view);
  }

  /** The L2 table offset field of entry `i` as big-endian halves: [hi, lo]; past the end [0, 0]. */
  async entry(i: number): Promise<[number, number]> {
    if (i < 0 || i >= this.entries) return [0, 0];
    if (this.whole) return [this.whole.getUint32(i * 8), this.whole.getUint32(i * 8 + 4)];
    const perPiece = L1_PIECE_BYTES / 8;
    const index = Math.floor(i / perPiece);
    const view = await this.piece(index);
    const at = (i - index * perPiece) * 8;
    return [view.getUint32(at), view.getUint32(at + 4)];
  }

  /** Drops this table's pieces (the image is closed). */
  release(): void {
    for (const [key, piece] of pieces) {
      if (!key.startsWith(`${this.id}:`)) continue;
      pieces.delete(key);
      l1Stats.residentBytes -= piece.bytes;
    }
  }

  private piece(index: number): Promise<DataView> {
    const key = `${this.id}:${index}`;
    const hit = pieces.get(key);
    if (hit) {
      pieces.delete(key);
      pieces.set(key, hit);
      return hit.view;
    }
    const start = index * L1_PIECE_BYTES;
    const bytes = Math.min(L1_PIECE_BYTES, this.entries * 8 - start);
    const view = this.read(this.offset + start, bytes).then(
      (b) => new DataView(b.buffer, b.byteOffset, b.byteLength),
    );
    const piece = { view, bytes };
    pieces.set(key, piece);
    l1Stats.loadedBytes += bytes;
    l1Stats.residentBytes += bytes;
    // A failed read is not kept: the next access tries again.
    view.catch(() => {
      if (pieces.get(key) !== piece) return;
      pieces.delete(key);
      l1Stats.residentBytes -= bytes;
    });
    evictTo(L1_CACHE_BYTES);
    l1Stats.peakResidentBytes = Math.max(l1Stats.peakResidentBytes, l1Stats.residentBytes);
    return view;
  }
}
