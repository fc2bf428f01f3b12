/**
 * Sorted, disjoint [start, end) runs of numbers (bytes, block indices): adding a run merges it
 * with the runs it overlaps or touches, and each lookup is a binary search. Used by the
 * overlay's zeroed blocks and by the NBD client's check of which bytes a reply has filled.
 */
export class RunSet {
  private starts: number[] = [];
  private ends: number[] = [];

  /** How many separate runs there are. */
  get size(): number {
    return this.starts.length;
  }

  /** Index of the first run ending after x. */
  private find(x: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  contains(x: number): boolean {
    const k = this.find(x);
    return k < this.starts.length && this.starts[k]! <= x;
  }

  /** Whether any run shares a number with [start, end) (an empty range shares none). */
  overlaps(start: number, end: number): boolean {
    if (end <= start) return false;
    const k = this.find(start);
    return k < this.starts.length && this.starts[k]! < end;
  }

  /** End of the run containing x (x must be inside one). */
  endOf(x: number): number {
    return this.ends[this.find(x)]!;
  }

  /** Start of the first run beginning at or after x (x itself when a run holds it). */
  nextStart(x: number): number | undefined {
    const k = this.find(x);
    if (k >= this.starts.length) return undefined;
    return Math.max(this.starts[k]!, x);
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    // Runs that overlap or touch [start, end) merge into one.
    const first = this.find(start - 1);
    let last = first;
    while (last < this.starts.length && this.starts[last]! <= end) last++;
    const merged = last > first;
    const s = merged ? Math.min(start, this.starts[first]!) : start;
    const e = merged ? Math.max(end, this.ends[last - 1]!) : end;
    this.starts.splice(first, last - first, s);
    this.ends.splice(first, last - first, e);
  }

  clear(): void {
    this.starts = [];
    this.ends = [];
  }
}
