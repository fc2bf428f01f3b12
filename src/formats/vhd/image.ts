/**
 * VHD (qemu's "vpc"): fixed disks (raw data + footer), dynamic disks (BAT of blocks, each
 * preceded by a sector bitmap) and differencing disks (dynamic disks over a parent VHD).
 */

import {
  CorruptImageError,
  DiskpipeError,
  UnsupportedFeatureError,
  UntrustedReferenceError,
  withContext,
} from '../../errors.js';
import type { ByteSource, FormatDetails, Image } from '../../image/types.js';
import { isPowerOfTwo } from '../../io/bytes.js';
import { SingleFlightLru } from '../../io/single-flight-lru.js';
import { BlockImage, type Segment } from '../block-image.js';
import type { OpenContext } from '../registry.js';
import { readExact } from './bytes.js';
import {
  DISK_DIFFERENCING,
  DISK_DYNAMIC,
  DISK_FIXED,
  DYNAMIC_HEADER_SIZE,
  type DynamicHeader,
  FOOTER_SIZE,
  formatUuid,
  hasCookie,
  parseDynamicHeader,
  parseFooter,
  type VhdFooter,
  virtualSize,
} from './footer.js';
import { noUsableLocator, parentPaths } from './locator.js';

const UNALLOCATED = 0xffffffff;
/** Largest BAT kept in memory (8M blocks: far past the 2040 GiB limit at the smallest usual block). */
const MAX_BAT_BYTES = 32 * 1024 * 1024;
/** Memory for cached sector bitmaps. */
const BITMAP_CACHE_BYTES = 4 * 1024 * 1024;

interface Dynamic {
  header: DynamicHeader;
  bat: Uint32Array;
  blockSize: number;
  bitmapSize: number;
}

/** A sector bitmap, or FULL when every sector of the block is stored (the usual case). */
type Bitmap = Uint8Array | typeof FULL;
const FULL = Symbol('full');

export class VhdImage extends BlockImage {
  readonly format = 'vpc';
  private readonly bitmaps: SingleFlightLru<number, Bitmap>;

  private constructor(
    readonly source: ByteSource,
    readonly size: number,
    readonly footer: VhdFooter,
    private readonly sizeFrom: 'chs' | 'current-size',
    private readonly dynamic: Dynamic | undefined,
    private readonly parentRef: string | undefined,
  ) {
    super();
    const perBitmap = dynamic?.bitmapSize ?? 512;
    this.bitmaps = new SingleFlightLru(Math.max(16, Math.floor(BITMAP_CACHE_BYTES / perBitmap)));
  }

  /** The footer's unique id, which a differencing child names as its parent. */
  get uniqueId(): Uint8Array {
    return this.footer.uniqueId;
  }

  get subformat(): 'fixed' | 'dynamic' | 'differencing' {
    if (!this.dynamic) return 'fixed';
    return this.footer.diskType === DISK_DIFFERENCING ? 'differencing' : 'dynamic';
  }

  static async open(source: ByteSource, ctx: OpenContext): Promise<VhdImage> {
    const { footer, atStart } = await findFooter(source);
    const { size, from } = wrap(source, () => virtualSize(footer));
    const label = `vpc image ${source.name}`;
    if (!atStart) {
      // A fixed disk: the guest bytes, then the footer.
      if (size > source.size - FOOTER_SIZE) {
        throw new CorruptImageError(
          `${label}: fixed disk of ${size} bytes is truncated (file holds ${source.size - FOOTER_SIZE})`,
        );
      }
      return new VhdImage(source, size, footer, from, undefined, undefined);
    }
    if (footer.diskType !== DISK_DYNAMIC && footer.diskType !== DISK_DIFFERENCING) {
      throw new UnsupportedFeatureError(`${label}: unknown VHD disk type ${footer.diskType}`);
    }
    const dynamic = await readDynamic(source, footer, size, label);
    if (footer.diskType === DISK_DYNAMIC) {
      return new VhdImage(source, size, footer, from, dynamic, undefined);
    }
    const { parent, ref } = await openParent(source, dynamic.header, ctx, label);
    const image = new VhdImage(source, size, footer, from, dynamic, ref);
    image.backing = parent;
    return image;
  }

  protected async *segments(offset: number, length: number): AsyncIterable<Segment> {
    const d = this.dynamic;
    if (!d) {
      yield { kind: 'data', offset, length, host: offset, sparse: true };
      return;
    }
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const index = Math.floor(pos / d.blockSize);
      const blockStart = index * d.blockSize;
      const stop = Math.min(end, blockStart + d.blockSize);
      const entry = d.bat[index]!;
      if (entry === UNALLOCATED) {
        // Runs of unallocated blocks become one segment (fast walks over empty disks).
        let last = index;
        while (
          last + 1 < d.bat.length &&
          d.bat[last + 1] === UNALLOCATED &&
          (last + 1) * d.blockSize < end
        ) {
          last++;
        }
        const runEnd = Math.min(end, (last + 1) * d.blockSize);
        yield this.absent(pos, runEnd - pos);
        pos = runEnd;
        continue;
      }
      const dataAt = entry * 512 + d.bitmapSize;
      const bitmap = await this.bitmap(index, entry * 512, d.bitmapSize);
      while (pos < stop) {
        const first = Math.floor((pos - blockStart) / 512);
        const stored = bitmap === FULL || bitSet(bitmap, first);
        let next = first + 1;
        const lastSector = Math.ceil((stop - blockStart) / 512);
        if (bitmap === FULL) next = lastSector;
        else while (next < lastSector && bitSet(bitmap, next) === stored) next++;
        const runEnd = Math.min(stop, blockStart + next * 512);
        yield stored
          ? { kind: 'data', offset: pos, length: runEnd - pos, host: dataAt + (pos - blockStart) }
          : this.absent(pos, runEnd - pos);
        pos = runEnd;
      }
    }
  }

  /** Sectors this file does not hold: the parent's (differencing) or zeroes (dynamic). */
  private absent(offset: number, length: number): Segment {
    return this.backing
      ? { kind: 'lower', offset, length }
      : { kind: 'zero', offset, length, present: true };
  }

  private bitmap(index: number, at: number, size: number): Promise<Bitmap> {
    return this.bitmaps.get(index, async () => {
      const b = await readExact(this.source, at, size, 'sector bitmap');
      return b.every((x) => x === 0xff) ? FULL : b;
    });
  }

  describe(): FormatDetails {
    const details: FormatDetails = {
      format: 'vpc',
      virtualSize: this.size,
      dirty: false,
      specific: {
        subformat: this.subformat,
        'creator-app': this.footer.creatorApp.replace(/\0+$/, ''),
        'size-from': this.sizeFrom,
        geometry: {
          cylinders: this.footer.cylinders,
          heads: this.footer.heads,
          'sectors-per-track': this.footer.sectorsPerTrack,
        },
        'unique-id': formatUuid(this.footer.uniqueId),
      },
    };
    if (this.dynamic) details.clusterSize = this.dynamic.blockSize;
    if (this.parentRef !== undefined) {
      details.backingFilename = this.parentRef;
      details.backingFormat = 'vpc';
    }
    return details;
  }
}

function bitSet(bitmap: Uint8Array, sector: number): boolean {
  // VHD bitmaps are big-endian: sector 0 is the most significant bit of byte 0.
  return ((bitmap[sector >> 3]! >> (7 - (sector & 7))) & 1) === 1;
}

/** Runs a decoder, naming the file in any error it raises. */
function wrap<T>(source: ByteSource, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CorruptImageError) {
      throw withContext(err, `vpc image ${source.name}`);
    }
    throw err;
  }
}

/**
 * Finds the authoritative footer. A fixed disk has it only at the end; a dynamic disk has a copy
 * at the start too (qemu reads that copy; the end copy is used if the start copy is damaged).
 */
async function findFooter(source: ByteSource): Promise<{ footer: VhdFooter; atStart: boolean }> {
  const label = `vpc image ${source.name}`;
  if (source.size < FOOTER_SIZE) {
    throw new CorruptImageError(`${label}: file is too small to be a VHD (${source.size} bytes)`);
  }
  const head = await readExact(source, 0, FOOTER_SIZE, 'VHD footer copy');
  const tailBuf = await readExact(source, source.size - FOOTER_SIZE, FOOTER_SIZE, 'VHD footer');
  const tail = hasCookie(tailBuf, 'conectix') ? parseFooter(tailBuf) : null;
  // A valid fixed footer at the end wins: a fixed disk's data may itself start with "conectix".
  if (tail && tail.diskType === DISK_FIXED) return { footer: tail, atStart: false };
  if (hasCookie(head, 'conectix')) {
    const footer = parseFooter(head) ?? (tail?.diskType !== DISK_FIXED ? tail : null);
    if (!footer) throw new CorruptImageError(`${label}: VHD footer checksum mismatch`);
    if (footer.diskType === DISK_FIXED) {
      throw new CorruptImageError(`${label}: fixed VHD footer at the start of the file`);
    }
    return { footer, atStart: true };
  }
  if (hasCookie(tailBuf, 'conectix')) {
    if (!tail) throw new CorruptImageError(`${label}: VHD footer checksum mismatch`);
    // qemu reads any image with only an end footer as fixed.
    return { footer: tail, atStart: false };
  }
  throw new CorruptImageError(`${label}: not a VHD image (no 'conectix' footer)`);
}

async function readDynamic(
  source: ByteSource,
  footer: VhdFooter,
  size: number,
  label: string,
): Promise<Dynamic> {
  if (footer.dataOffset > BigInt(source.size - DYNAMIC_HEADER_SIZE)) {
    throw new CorruptImageError(
      `${label}: dynamic disk header offset ${footer.dataOffset} is past the end of the file`,
    );
  }
  const at = Number(footer.dataOffset);
  const header = parseDynamicHeader(
    await readExact(source, at, DYNAMIC_HEADER_SIZE, 'dynamic disk header'),
    label,
  );
  const { blockSize, maxTableEntries, tableOffset } = header;
  if (!isPowerOfTwo(blockSize) || blockSize < 512) {
    throw new CorruptImageError(`${label}: invalid block size ${blockSize}`);
  }
  if (maxTableEntries * blockSize < size) {
    throw new CorruptImageError(
      `${label}: BAT of ${maxTableEntries} blocks of ${blockSize} bytes is smaller than the disk (${size} bytes)`,
    );
  }
  const batBytes = maxTableEntries * 4;
  if (batBytes > MAX_BAT_BYTES) {
    throw new UnsupportedFeatureError(`${label}: BAT of ${maxTableEntries} entries is too large`);
  }
  const raw = await readExact(source, tableOffset, batBytes, 'block allocation table');
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const bat = new Uint32Array(maxTableEntries);
  const bitmapSize = Math.ceil(blockSize / (512 * 8) / 512) * 512;
  for (let i = 0; i < maxTableEntries; i++) {
    const entry = dv.getUint32(i * 4);
    bat[i] = entry;
    // As qemu: every allocated block (bitmap + data) must lie inside the file.
    if (entry !== UNALLOCATED && entry * 512 + bitmapSize + blockSize > source.size) {
      throw new CorruptImageError(
        `${label}: BAT entry ${i} points past the end of the file (block at ${entry * 512}; file is ${source.size} bytes, truncated?)`,
      );
    }
  }
  checkDistinctBlocks(bat, (bitmapSize + blockSize) / 512, label);
  return { header, bat, blockSize, bitmapSize };
}

/**
 * Allocated blocks (bitmap + data) must not share sectors: one block behind every BAT entry
 * lets a small file claim terabytes of sector bitmaps to walk.
 */
function checkDistinctBlocks(bat: Uint32Array, blockSectors: number, label: string): void {
  const used = bat.filter((entry) => entry !== UNALLOCATED).sort();
  for (let i = 1; i < used.length; i++) {
    const [a, b] = [used[i - 1]!, used[i]!];
    if (b - a < blockSectors) {
      const what =
        a === b
          ? `two BAT entries point at the block at sector ${a}`
          : `blocks at sectors ${a} and ${b} overlap`;
      throw new CorruptImageError(`${label}: ${what} (cross-linked BAT)`);
    }
  }
}

async function openParent(
  source: ByteSource,
  header: DynamicHeader,
  ctx: OpenContext,
  label: string,
): Promise<{ parent: Image; ref: string }> {
  const candidates = await parentPaths(source, header.locators, label);
  if (candidates.length === 0) throw noUsableLocator(label, header.parentName);
  let lastError: unknown;
  for (const ref of candidates) {
    let parent: Image;
    try {
      parent = await ctx.openBacking(ref, source, 'vpc');
    } catch (err) {
      // A refused reference is final; a missing file may be named better by the next locator.
      if (err instanceof UntrustedReferenceError || !(err instanceof DiskpipeError)) throw err;
      if (err.code !== 'NOT_FOUND') throw err;
      lastError = err;
      continue;
    }
    if (!(parent instanceof VhdImage) || !sameBytes(parent.uniqueId, header.parentUuid)) {
      await parent.close().catch(() => {});
      throw new CorruptImageError(
        `${label}: parent '${ref}' is not the VHD this disk was made from (unique id ${formatUuid(header.parentUuid)} expected)`,
      );
    }
    return { parent, ref };
  }
  throw lastError;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
