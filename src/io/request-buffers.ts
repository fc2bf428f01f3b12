import { PAGE, pageStart, wholePages } from './page-aligned.js';

/**
 * Jobs that move less than this align no buffer: finding a buffer's address loads the native
 * layer (koffi, some 20 ms of startup), more than the misaligned copies cost (about 0.4 ms
 * per MiB, page-aligned.ts).
 */
export const ALIGN_FROM_BYTES = 32 * 1024 * 1024;

/**
 * A fixed pool of request buffers: `slots` buffers of `size` bytes on one SharedArrayBuffer,
 * allocated on first use and reused for every request after that. Shared memory, so decode
 * workers write into a buffer in place; one allocation, so the pages are faulted in once
 * (a fresh buffer per request costs a page fault and a zero fill per 4 KiB, as system time).
 * Each buffer starts on a page boundary (page-aligned.ts: the kernel copies to and from
 * misaligned memory much more slowly), unless `align` is false (a small job).
 */
export class RequestBuffers {
  private memory: SharedArrayBuffer | undefined;
  private start = 0;
  private readonly stride: number;

  constructor(
    readonly slots: number,
    readonly size: number,
    private readonly align = true,
  ) {
    this.stride = wholePages(size);
  }

  /** Buffer `slot` (0 ≤ slot < slots); the same memory on every call. */
  get(slot: number): Buffer {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) {
      throw new RangeError(`request buffer ${slot} is out of range (${this.slots} slots)`);
    }
    if (!this.memory) {
      this.memory = new SharedArrayBuffer(this.slots * this.stride + PAGE);
      this.start = this.align ? pageStart(this.memory) : 0;
    }
    return Buffer.from(this.memory, this.start + slot * this.stride, this.size);
  }
}
