/**
 * Reuses large I/O buffers. A fresh buffer for every request costs an mmap, page faults and a
 * munmap (measured: about 3x the CPU of the read itself for 256 KiB reads), so the server hands
 * payload and reply buffers back here once the socket has taken them.
 *
 * Large buffers live on SharedArrayBuffers: a decode worker then inflates compressed clusters
 * straight into the reply (a plain buffer costs a staging buffer and a copy per READ).
 */
const MIN_CLASS = 64 * 1024;
/**
 * Every pooled buffer has this much beyond its power-of-two size, so a reply header can sit in
 * front of a power-of-two payload without doubling the buffer.
 */
const HEADROOM = 64;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private pooled = 0;

  /** @param maxPooled bytes kept for reuse (beyond that, returned buffers are dropped). */
  constructor(private readonly maxPooled = 64 * 1024 * 1024) {}

  /** A buffer of exactly `n` bytes with unspecified content. */
  take(n: number): Buffer {
    if (n < MIN_CLASS) return Buffer.allocUnsafe(n);
    const size = sizeClass(n);
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.pooled -= size;
      return buf.subarray(0, n);
    }
    return Buffer.from(new SharedArrayBuffer(size)).subarray(0, n);
  }

  /** Returns a buffer from take(); the caller must not use it afterwards. */
  give(buf: Uint8Array): void {
    const size = buf.buffer.byteLength;
    if (!(buf.buffer instanceof SharedArrayBuffer)) return;
    if (size < MIN_CLASS || size !== sizeClass(size) || buf.byteOffset !== 0) return;
    if (this.pooled + size > this.maxPooled) return;
    const whole = Buffer.from(buf.buffer, 0, size);
    const list = this.free.get(size);
    if (list) list.push(whole);
    else this.free.set(size, [whole]);
    this.pooled += size;
  }
}

function sizeClass(n: number): number {
  return Math.max(MIN_CLASS, 2 ** Math.ceil(Math.log2(Math.max(1, n - HEADROOM)))) + HEADROOM;
}
