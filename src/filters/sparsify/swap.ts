/**
 * Linux swap: everything after the header page is free once the system is off. Only the
 * `SWAPSPACE2` signature is trusted; a hibernation image (S1SUSPEND, ULSUSPEND...) or the old
 * `SWAP-SPACE` layout passes through unchanged.
 */
import { view } from '../../io/bytes.js';
import { ascii, type PartReader } from './part-reader.js';
import type { FreeSpace, Range, Verdict } from './types.js';

const PAGE_SIZES = [4096, 8192, 16384, 65536];
const SWAP_HEADER_VERSION = 1;

export async function probeSwap(part: PartReader): Promise<Verdict | undefined> {
  for (const page of PAGE_SIZES) {
    if (part.length < page) break;
    const tail = ascii(await part.bytes(page - 10, 10), 0, 10);
    if (tail === 'SWAPSPACE2') return swapSpace(part, page);
    if (/^(S1SUSPEND|S2SUSPEND|ULSUSPEND|LINHIB0001|SWAP-SPACE)/.test(tail)) {
      return {
        kind: 'pass',
        filesystem: 'swap',
        reason: `signature ${tail.replace(/\0+$/, '')}, not SWAPSPACE2`,
      };
    }
  }
  return undefined;
}

async function swapSpace(part: PartReader, page: number): Promise<Verdict> {
  const dv = view(await part.bytes(1024, 12));
  const version = dv.getUint32(0, true);
  if (version !== SWAP_HEADER_VERSION) {
    return { kind: 'pass', filesystem: 'swap', reason: `swap header version ${version}` };
  }
  // Pages 1..last_page are the swap area; nothing past the partition is ever touched.
  const lastPage = dv.getUint32(4, true);
  const end = Math.min(part.length - (part.length % page), (lastPage + 1) * page);
  return { kind: 'sparsify', filesystem: 'swap', space: new SwapSpace(page, end) };
}

class SwapSpace implements FreeSpace {
  constructor(
    private readonly page: number,
    private readonly end: number,
  ) {}

  async *free(from: number, to: number): AsyncIterable<Range> {
    const start = Math.max(from, this.page);
    const end = Math.min(to, this.end);
    if (end > start) yield { start, end };
  }
}
