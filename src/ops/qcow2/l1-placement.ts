/**
 * Resize rewrites L1 entries where the header says the table is. A header whose L1 table
 * lies on the header itself, the refcount table or a refcount block (a crafted or damaged
 * image) would have those bytes zeroed as "new L1 entries", silently losing refcounts;
 * qemu-img resize finds the same overlap and refuses. Checked before anything is written.
 */
import { CorruptImageError } from '../../errors.js';
import type { Qcow2Header } from '../../formats/qcow2/header.js';
import type { StoredRefcounts } from './refcounts.js';

export async function refuseMisplacedL1(
  who: string,
  h: Qcow2Header,
  refs: StoredRefcounts,
): Promise<void> {
  const cs = h.clusterSize;
  const first = h.l1TableOffset / cs;
  const end = first + Math.max(1, Math.ceil((h.l1Size * 8) / cs));
  const inL1 = (cluster: number) => cluster >= first && cluster < end;
  const overlap = (what: string) =>
    new CorruptImageError(
      `${who}: the L1 table (at ${h.l1TableOffset}) overlaps the ${what}; resizing would overwrite it (repair the image with qemu-img check -r all)`,
    );
  if (inL1(0)) throw overlap('image header');
  const rt = h.refcountTableOffset / cs;
  for (let c = rt; c < rt + h.refcountTableClusters; c++) {
    if (inL1(c)) throw overlap('refcount table');
  }
  for (let i = 0; i < refs.tableEntries; i++) {
    const off = await refs.blockOffset(i);
    if (off !== undefined && off !== 0 && inL1(off / cs)) throw overlap(`refcount block ${i}`);
  }
}
