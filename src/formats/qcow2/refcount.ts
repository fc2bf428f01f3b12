/**
 * qemu's "metadata preallocation" test (qcow2_detect_metadata_preallocation): when the image
 * has clearly more clusters in use than the host file has blocks allocated, qemu also asks the
 * host file which parts of data clusters are holes, and reports those as zero. `map` and
 * `extents` do the same so that they agree with qemu-img map; refcounts are read only here.
 */
import type { ByteSource } from '../../image/types.js';
import type { Qcow2Header } from './header.js';
import { readExact } from './reader.js';

export async function detectMetadataPreallocation(
  source: ByteSource,
  header: Qcow2Header,
): Promise<boolean> {
  const allocated = await source.allocatedSize?.();
  if (allocated === undefined) return false;
  const cs = header.clusterSize;
  const realClusters = Math.floor(allocated / cs);
  const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
  const endCluster = Math.ceil(source.size / cs);
  const bits = 2 ** header.refcountOrder;
  const perBlock = (cs * 8) / bits;
  const tableEntries = (header.refcountTableClusters * cs) / 8;
  const blocks = Math.min(tableEntries, Math.ceil(endCluster / perBlock));
  if (blocks === 0) return false;
  try {
    const table = await readExact(source, header.refcountTableOffset, blocks * 8, 'refcount table');
    const tv = new DataView(table.buffer);
    let count = 0;
    for (let b = 0; b < blocks && count < threshold; b++) {
      const hi = tv.getUint32(b * 8);
      const lo = tv.getUint32(b * 8 + 4);
      if (hi > 0x1fffff) return false; // beyond 2^53: certainly not in the file
      const off = hi * 2 ** 32 + ((lo & ~0x1ff) >>> 0);
      if (off === 0) continue;
      if (off % cs !== 0) return false;
      const block = await readExact(source, off, cs, 'refcount block');
      const n = Math.min(perBlock, endCluster - b * perBlock);
      for (let i = 0; i < n && count < threshold; i++) {
        if (refcountNonZero(block, i, bits)) count++;
      }
    }
    return count >= threshold;
  } catch {
    // qemu treats any error here as "no preallocation" (the check is only a hint).
    return false;
  }
}

function refcountNonZero(block: Uint8Array, index: number, bits: number): boolean {
  if (bits < 8) {
    const bit = index * bits;
    return ((block[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1)) !== 0;
  }
  const bytes = bits / 8;
  for (let k = 0; k < bytes; k++) if (block[index * bytes + k] !== 0) return true;
  return false;
}
