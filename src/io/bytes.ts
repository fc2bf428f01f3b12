/**
 * Byte-buffer helpers every layer shares: zero tests and comparisons (one memcmp, Buffer#compare,
 * per block: a byte loop is about ten times slower), DataViews, powers of two, alignment.
 */

/** A DataView over exactly the bytes of `buf` (a subarray's view starts at its own offset). */
export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** True for 1, 2, 4, ... up to 2^53 (exact beyond 32 bits, unlike `n & (n - 1)`). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** `n` rounded up to a multiple of `a`. */
export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** `n` rounded down to a multiple of `a`. */
export function alignDown(n: number, a: number): number {
  return Math.floor(n / a) * a;
}

let zeroes = Buffer.alloc(64 * 1024);

/** A shared all-zero buffer of at least `n` bytes (never written to). */
export function zeroBlock(n: number): Buffer {
  if (zeroes.length < n) zeroes = Buffer.alloc(n);
  return zeroes;
}

export function isZero(buf: Uint8Array): boolean {
  const z = zeroBlock(buf.length);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.length).equals(z.subarray(0, buf.length));
}

/** Index of the first non-zero byte, or -1 (one memcmp for the whole buffer when it is zero). */
export function firstNonZero(buf: Buffer): number {
  const z = zeroBlock(Math.min(buf.length, 1 << 20));
  for (let i = 0; i < buf.length; i += z.length) {
    const end = Math.min(i + z.length, buf.length);
    if (buf.compare(z, 0, end - i, i, end) !== 0) return i + firstNonZeroSmall(buf, i, end);
  }
  return -1;
}

/** The first non-zero byte of buf[from, to) (known to hold one), relative to `from`. */
function firstNonZeroSmall(buf: Buffer, from: number, to: number): number {
  const z = zeroBlock(4096);
  for (let i = from; i < to; i += 4096) {
    const end = Math.min(i + 4096, to);
    if (buf.compare(z, 0, end - i, i, end) === 0) continue;
    for (let j = i; j < end; j++) if (buf[j] !== 0) return j - from;
  }
  return -1;
}

/** Index of the first byte where `a` and `b` (same length) differ, or -1. */
export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  for (let i = 0; i < a.length; i += 4096) {
    const end = Math.min(i + 4096, a.length);
    if (a.compare(b, i, end, i, end) === 0) continue;
    for (let j = i; j < end; j++) if (a[j] !== b[j]) return j;
  }
  return -1;
}
