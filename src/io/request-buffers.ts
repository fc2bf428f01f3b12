/**
 * A fixed pool of request buffers: `slots` buffers of `size` bytes on one SharedArrayBuffer,
 * allocated on first use and reused for every request after that. Shared memory, so decode
 * workers write into a buffer in place; one allocation, so the pages are faulted in once
 * (a fresh buffer per request costs a page fault and a zero fill per 4 KiB, as system time).
 */
export class RequestBuffers {
  private memory: SharedArrayBuffer | undefined;

  constructor(
    readonly slots: number,
    readonly size: number,
  ) {}

  /** Buffer `slot` (0 ≤ slot < slots); the same memory on every call. */
  get(slot: number): Buffer {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) {
      throw new RangeError(`request buffer ${slot} is out of range (${this.slots} slots)`);
    }
    this.memory ??= new SharedArrayBuffer(this.slots * this.size);
    return Buffer.from(this.memory, slot * this.size, this.size);
  }
}
