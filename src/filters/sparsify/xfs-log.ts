/**
 * Whether an XFS internal log is clean: its last record (found from the cycle numbers stamped
 * on every 512-byte block) is a lone unmount record that ends exactly at the head. Anything
 * else — a dirty log, a torn write, a layout this reader does not follow — counts as dirty.
 * Facts from the XFS on-disk format documentation (log records, xlog_rec_header).
 */
import { view } from '../../io/bytes.js';
import type { PartReader } from './part-reader.js';

const BB = 512;
const RECORD_MAGIC = 0xfeedbabe;
const UNMOUNT_TRANS = 0x20;
const VERSION_2 = 0x2;
const CYCLE_HEADER_SIZE = 32 * 1024;
/** How far before the head the last record header may start (largest log buffer: 256 KiB). */
const MAX_RECORD = 512 * 1024;
/** How far after the head every block must carry the previous cycle. */
const VERIFY_AFTER_HEAD = 1024 * 1024;

export async function xfsLogClean(
  part: PartReader,
  start: number,
  length: number,
): Promise<boolean> {
  const blocks = Math.floor(length / BB);
  if (blocks < 2) return false;
  const cycleAt = async (block: number): Promise<number> => {
    const dv = view(await part.bytes(start + block * BB, 8));
    return dv.getUint32(0) === RECORD_MAGIC ? dv.getUint32(4) : dv.getUint32(0);
  };
  // The head is the first block whose cycle differs from block 0's (binary search: blocks
  // before it carry cycle c, blocks after it c - 1, or 0 in a log never wrapped).
  const first = await cycleAt(0);
  if (first === 0) return false;
  const last = await cycleAt(blocks - 1);
  if (last === first) return false; // the head sits exactly at the wrap: not followed here
  if (last !== first - 1 && last !== 0) return false;
  let lo = 0;
  let hi = blocks - 1;
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if ((await cycleAt(mid)) === first) lo = mid;
    else hi = mid;
  }
  const head = hi;
  // No stray block of the current cycle just past the head (a torn or out-of-order write).
  const after = Math.min(blocks - head, VERIFY_AFTER_HEAD / BB);
  const tail = await part.bytes(start + head * BB, after * BB);
  const tv = view(tail);
  for (let b = 0; b < after; b++) {
    const word = tv.getUint32(b * BB);
    const cycle = word === RECORD_MAGIC ? tv.getUint32(b * BB + 4) : word;
    if (cycle !== last) return false;
  }
  // The last record header before the head.
  const from = Math.max(0, head - MAX_RECORD / BB);
  const window = await part.bytes(start + from * BB, (head - from) * BB);
  const wv = view(window);
  for (let b = head - 1; b >= from; b--) {
    const at = (b - from) * BB;
    if (wv.getUint32(at) !== RECORD_MAGIC || wv.getUint32(at + 4) !== first) continue;
    const version = wv.getUint32(at + 8);
    const len = wv.getUint32(at + 12);
    const ops = wv.getUint32(at + 40);
    const size = wv.getUint32(at + 320);
    const headerBlocks =
      version & VERSION_2 && size > CYCLE_HEADER_SIZE ? Math.ceil(size / CYCLE_HEADER_SIZE) : 1;
    if (b + headerBlocks + Math.ceil(len / BB) !== head || ops !== 1) return false;
    const data = b + headerBlocks;
    if (data >= head) return false;
    return (window[(data - from) * BB + 9]! & UNMOUNT_TRANS) !== 0;
  }
  return false;
}
