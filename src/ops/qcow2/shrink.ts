/**
 * Shrinking a qcow2 image in place, as qemu-img resize --shrink: the clusters wholly past the
 * new end are unmapped and freed, L2 tables past it too, and the file loses its unused tail.
 * Order: the header first (the guest stops seeing the range), then the tables, flushed, and
 * the refcounts last, so a crash leaves leaked clusters at worst, never a corrupt image.
 */
import { CorruptImageError } from '../../errors.js';
import type { Qcow2Header } from '../../formats/qcow2/header.js';
import type { LocalFile } from '../../io/file.js';
import { COMPRESSED, entries, OFFSET_MASK, offsetOf, readZeroFilled } from './file.js';
import { dropUnusedBlocks, StoredRefcounts } from './refcounts.js';

export async function shrinkQcow2(
  file: LocalFile,
  h: Qcow2Header,
  newSize: number,
  writeHeader: () => Promise<void>,
): Promise<void> {
  const cs = h.clusterSize;
  const entrySize = h.extendedL2 ? 16 : 8;
  const l2Entries = cs / entrySize;
  const firstGone = Math.ceil(newSize / cs); // guest clusters from here on are dropped
  const newL1 = Math.ceil(newSize / (cs * l2Entries));
  const who = file.name;
  const l1Bytes = await readZeroFilled(file, h.l1TableOffset, h.l1Size * 8);
  const l1 = entries(l1Bytes);
  /** Host ranges whose references go away: [offset, length]. */
  const freed: Array<[number, number]> = [];
  const l2Writes: Array<[Uint8Array, number]> = [];

  for (let i = Math.floor(firstGone / l2Entries); i < h.l1Size; i++) {
    const l2 = offsetOf(l1[i]!);
    if (l2 === 0) continue;
    if (l2 % cs !== 0 || l2 + cs > file.size) {
      throw new CorruptImageError(`${who}: L1 entry ${i} points at an invalid L2 table (${l2})`);
    }
    const table = await readZeroFilled(file, l2, cs);
    const dv = new DataView(table.buffer);
    const start = i < newL1 ? firstGone - i * l2Entries : 0;
    for (let j = start; j < l2Entries; j++) {
      const e = dv.getBigUint64(j * entrySize);
      const range = hostRange(e, h);
      if (range) freed.push(range);
      if (i < newL1) table.fill(0, j * entrySize, (j + 1) * entrySize);
    }
    if (i < newL1) l2Writes.push([table, l2]);
    else {
      freed.push([l2, cs]);
      l1Bytes.fill(0, i * 8, i * 8 + 8);
    }
  }

  await writeHeader();
  await file.sync();
  for (const [table, at] of l2Writes) await file.write(table, at);
  if (h.l1Size > newL1) await file.write(l1Bytes, h.l1TableOffset);
  await file.sync();

  const refs = new StoredRefcounts(file, h);
  for (const [offset, length] of freed) {
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    for (let c = first; c <= last; c++) await refs.add(c, -1n);
  }
  const write = (buf: Uint8Array, at: number) => file.write(buf, at);
  await refs.writeBlocks(write);
  await file.sync();
  await dropUnusedBlocks(refs, write, () => file.sync());

  // Drop the unused tail of the file (clusters nothing references any more).
  let last = Math.ceil(file.size / cs) - 1;
  while (last > 0 && (await refs.get(last)) === 0n) last--;
  if ((last + 1) * cs < file.size) await file.truncate((last + 1) * cs);
}

/** The host bytes an L2 entry references (compressed: its sectors), or undefined. */
function hostRange(e: bigint, h: Qcow2Header): [number, number] | undefined {
  if (e & COMPRESSED) {
    const shift = BigInt(62 - (h.clusterBits - 8));
    const offset = Number(e & ((1n << shift) - 1n));
    const sectors = Number((e >> shift) & ((1n << BigInt(h.clusterBits - 8)) - 1n)) + 1;
    const start = offset - (offset % 512);
    return [start, sectors * 512];
  }
  const off = Number(e & OFFSET_MASK);
  // Unallocated, or a zero cluster without storage; zero clusters with storage are freed.
  if (off === 0) return undefined;
  if (off % h.clusterSize !== 0) {
    throw new CorruptImageError(`L2 entry ${e.toString(16)} is not cluster aligned`);
  }
  return [off, h.clusterSize];
}
