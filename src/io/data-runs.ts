/**
 * The last few data runs SEEK_HOLE found in a file, so asking again about a run already found
 * (an NBD server asks about every READ) costs no system call. Only data is remembered: if the
 * file changes behind our back, a remembered run is at worst read when it could have been
 * skipped, never skipped while it holds data. qemu's file driver keeps the same kind of cache.
 */
const RUNS = 8;

export class DataRuns {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private next = 0;

  /** The end of the remembered data run holding `offset`, if any. */
  endOf(offset: number): number | undefined {
    for (let i = 0; i < this.starts.length; i++) {
      if (offset >= this.starts[i]! && offset < this.ends[i]!) return this.ends[i];
    }
    return undefined;
  }

  /** [start, end) is data (oldest run forgotten first). */
  add(start: number, end: number): void {
    this.starts[this.next] = start;
    this.ends[this.next] = end;
    this.next = (this.next + 1) % RUNS;
  }

  /** Forgets every run (after a change that may have made holes). */
  clear(): void {
    this.starts.length = 0;
    this.ends.length = 0;
    this.next = 0;
  }
}
