/**
 * Reusable buffers on SharedArrayBuffers, so a worker reads and writes them in place (no
 * copy through postMessage). Sizes are rounded up to a power of two; a few of each size are
 * kept, so memory stays bounded by what was in use at once.
 */
const KEEP_PER_SIZE = 8;
const MIN_BYTES = 64 * 1024;
const free = new Map<number, Uint8Array[]>();

function sizeClass(n: number): number {
  return Math.max(MIN_BYTES, 2 ** Math.ceil(Math.log2(Math.max(1, n))));
}

/** A shared buffer of exactly `n` bytes (a view on a possibly larger pooled one). */
export function acquireShared(n: number): Uint8Array {
  const size = sizeClass(n);
  const whole = free.get(size)?.pop() ?? new Uint8Array(new SharedArrayBuffer(size));
  return whole.subarray(0, n);
}

/** Gives a buffer from acquireShared back (it must not be used afterwards). */
export function releaseShared(buf: Uint8Array): void {
  const whole = new Uint8Array(buf.buffer, 0, buf.buffer.byteLength);
  const list = free.get(whole.length) ?? [];
  if (list.length < KEEP_PER_SIZE) list.push(whole);
  free.set(whole.length, list);
}

export function isShared(buf: Uint8Array): boolean {
  return buf.buffer instanceof SharedArrayBuffer;
}

/**
 * Waits for every promise, then throws the first failure: a buffer shared with a worker may
 * only be released once no decode is still writing or reading it.
 */
export async function allSettledOrThrow(jobs: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
