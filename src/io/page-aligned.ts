/**
 * Page-aligned views on shared memory. V8 takes a large SharedArrayBuffer from malloc, whose
 * mmap chunk header puts the first byte 16 bytes past a page boundary. The kernel's copy
 * between the page cache and a buffer whose bytes sit at another offset within a cache line
 * (pread, pwrite) runs about 1.6x slower: measured here copying the rootfs image's 695 MiB
 * of data with pread + pwrite, system time 0.48-0.52 s from an aligned buffer, 0.78-0.82 s
 * from one 16 bytes off.
 */
import { addressOf, loadSystemLib } from './system-lib.js';

export const PAGE = 4096;

/**
 * Where in `memory` the first page boundary is (0 to PAGE-1); 0 when the address cannot be
 * known (native calls off or unavailable), which costs speed, never correctness.
 */
export function pageStart(memory: SharedArrayBuffer): number {
  const sys = loadSystemLib(['libc.so.6']);
  if (typeof sys === 'string' || memory.byteLength === 0) return 0;
  let address: bigint;
  try {
    address = addressOf(sys, new Uint8Array(memory, 0, 1));
  } catch {
    return 0;
  }
  return Number((BigInt(PAGE) - (address % BigInt(PAGE))) % BigInt(PAGE));
}

/** `n` rounded up to whole pages. */
export function wholePages(n: number): number {
  return Math.ceil(n / PAGE) * PAGE;
}
