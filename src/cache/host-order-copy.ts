/**
 * Copying an image that is still downloading in the order its bytes arrive: host-file order,
 * not guest order. A qcow2 written by a guest (or qemu-io) in any order keeps its clusters in
 * allocation order, so a guest-order copy would wait for bytes near the end of the download
 * while earlier ones sit idle. Guest space is taken in windows; in each, the data ranges are
 * sorted by where the format stores them (ranges without a host offset, such as compressed
 * clusters, keep their guest place after the last known one) and written at their guest
 * offsets. Zero ranges are never read; 4 KiB zero blocks inside data stay holes.
 */
import { startDecodeWorkers } from '../codec/pool.js';
import type { Image, MapEntry } from '../image/types.js';
import { throwIfAborted } from '../io/abort.js';
import type { LocalFile } from '../io/file.js';
import type { CopyTap } from '../ops/copy/index.js';
import type { PacedTap } from './copy-pass-hash.js';
import { writeSparse } from './sparse-write.js';

/** Guest bytes planned at once: the metadata (L2 tables) of one window is read up front. */
const WINDOW = 256 * 1024 * 1024;
const REQUEST = 2 * 1024 * 1024;
/** Pieces being read, hashed and written at once (as many as the copy engine's requests). */
const IN_FLIGHT = 8;

interface Range {
  offset: number;
  length: number;
}

interface Piece {
  offset: number;
  length: number;
  /** Sort key: host offset (or the last one known before it in guest order). */
  key: number;
}

export type MappedImage = Image & Required<Pick<Image, 'mapping'>>;

export function hasMapping(image: Image): image is MappedImage {
  return typeof image.mapping === 'function';
}

export async function copyInHostOrder(
  image: MappedImage,
  file: LocalFile,
  tap: CopyTap | PacedTap,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<{ bytesWritten: number }> {
  // Whole blocks at block-aligned places in shared memory: the hash reads them in place.
  const hashInPlace = 'dataShared' in tap ? tap.dataShared?.bind(tap) : undefined;
  const align = (hashInPlace && 'blockSize' in tap && tap.blockSize) || 1;
  const slots = Array.from(
    { length: IN_FLIGHT },
    () => new Uint8Array(new SharedArrayBuffer(REQUEST + align)),
  );
  let bytesWritten = 0;
  let done = 0;
  let failed = false;
  // One plan for all workers, a window at a time: the next window is planned when a worker
  // asks for it, while the others still copy the last pieces of this one (no drain between
  // windows). An async generator answers concurrent next() calls in order.
  async function* windows(): AsyncGenerator<Piece> {
    for (let win = 0; win < image.size && !failed; win += WINDOW) {
      throwIfAborted(signal, 'pull');
      const { pieces, zeros } = await plan(image, win, Math.min(WINDOW, image.size - win));
      for (const z of zeros) {
        tap.zero(z.offset, z.length);
        done += z.length;
      }
      onProgress?.(done, image.size);
      yield* pieces;
    }
  }
  const planned = windows();
  const worker = async (slot: number) => {
    const buf = slots[slot]!;
    try {
      for (let r = await planned.next(); !r.done && !failed; r = await planned.next()) {
        const p = r.value;
        // The hash keeps up or the copy waits: its memory stays bounded.
        if ('room' in tap) await tap.room();
        const at = p.offset % align;
        const view = buf.subarray(at, at + p.length);
        await image.read(view, p.offset);
        // Hashed in place while it is written; the slot is reused once both are done.
        const hashed = hashInPlace ? hashInPlace(view, p.offset) : tap.data(view, p.offset);
        // Not `+= await`: that would add to a total read before the other workers' writes.
        // On this thread: a thread-pool round trip per 256 KiB write cost more CPU than the
        // copy into the page cache (see LocalFile.writeBlocking).
        const written = await writeSparse(file, view, p.offset, true);
        await hashed;
        bytesWritten += written;
        done += p.length;
        onProgress?.(done, image.size);
      }
    } catch (err) {
      failed = true; // the others stop at their next piece
      throw err;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => worker(i)));
  return { bytesWritten };
}

/**
 * The data pieces of [start, start+length), at most REQUEST bytes each, in host order, and
 * its zero ranges, from one walk of the image's map (the map's zero flags are its extents': a
 * second walk for them decoded every L2 entry twice). Guest neighbours that are host
 * neighbours too (or both without a host offset, as compressed clusters are, one map entry
 * each) share a piece: one read then spans many clusters, which the format decodes as one
 * batch (off the calling thread) instead of one cluster at a time.
 */
async function plan(
  image: MappedImage,
  start: number,
  length: number,
): Promise<{ pieces: Piece[]; zeros: Range[] }> {
  const end = start + length;
  const entries: MapEntry[] = [];
  const zeros: Range[] = [];
  for await (const e of image.mapping(start, length)) {
    const from = Math.max(e.offset, start);
    const to = Math.min(e.offset + e.length, end);
    if (to <= from) continue;
    const m = from === e.offset && to === e.offset + e.length ? e : clip(e, from, to);
    entries.push(m);
    // Compressed clusters decode on the decode pool: its workers load their modules while
    // the first pieces are read (started by the first batch, they were ready 0.2-0.5 s
    // after the converter needed them).
    if (m.compressed && !m.zero) startDecodeWorkers();
    if (!m.zero) continue;
    const last = zeros.at(-1);
    if (last && last.offset + last.length === m.offset) last.length += m.length;
    else zeros.push({ offset: m.offset, length: m.length });
  }
  const pieces: Piece[] = [];
  let lastKey = 0;
  /** The last piece, while the next range may still join it. */
  let open: (Piece & { host: boolean }) | undefined;
  const add = (offset: number, n: number, key: number, host: boolean) => {
    const joins =
      open &&
      open.host === host &&
      open.offset + open.length === offset &&
      (!host || open.key + open.length === key);
    if (joins && open) {
      const take = Math.min(REQUEST - open.length, n);
      open.length += take;
      offset += take;
      n -= take;
      if (host) key += take;
    }
    for (; n > 0; ) {
      const len = Math.min(REQUEST, n);
      open = { offset, length: len, key, host };
      pieces.push(open);
      offset += len;
      if (host) key += len;
      n -= len;
    }
  };
  for (const m of entries) {
    // Zero entries are never read, but their host offsets still place what follows.
    if (!m.zero) {
      if (m.hostOffset === undefined) add(m.offset, m.length, lastKey, false);
      else add(m.offset, m.length, m.hostOffset, true);
    }
    if (m.hostOffset !== undefined) lastKey = m.hostOffset + m.length;
  }
  // Stable: pieces with equal keys keep their guest order.
  const sorted = pieces
    .map(({ offset, length, key }) => ({ offset, length, key }))
    .sort((a, b) => a.key - b.key);
  return { pieces: sorted, zeros };
}

/** The part [from, to) of a map entry. */
function clip(e: MapEntry, from: number, to: number): MapEntry {
  const m = { ...e, offset: from, length: to - from };
  if (e.hostOffset !== undefined) m.hostOffset = e.hostOffset + (from - e.offset);
  return m;
}
