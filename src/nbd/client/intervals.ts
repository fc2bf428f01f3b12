/**
 * Byte ranges a structured READ reply has filled so far. Chunks may come in any order but must
 * not overlap; this keeps merged, sorted runs so the check stays cheap when chunks arrive in
 * order (the usual case) and correct when they do not.
 */
export class IntervalSet {
  private starts: number[] = [];
  private ends: number[] = [];
  covered = 0;

  /** Adds [start, end); false if it overlaps a range already added. */
  add(start: number, end: number): boolean {
    // Index of the first run that ends after `start`.
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= start) lo = mid + 1;
      else hi = mid;
    }
    if (lo < this.starts.length && this.starts[lo]! < end) return false;
    this.covered += end - start;
    const joinsLeft = lo > 0 && this.ends[lo - 1] === start;
    const joinsRight = lo < this.starts.length && this.starts[lo] === end;
    if (joinsLeft && joinsRight) {
      this.ends[lo - 1] = this.ends[lo]!;
      this.starts.splice(lo, 1);
      this.ends.splice(lo, 1);
    } else if (joinsLeft) {
      this.ends[lo - 1] = end;
    } else if (joinsRight) {
      this.starts[lo] = start;
    } else {
      this.starts.splice(lo, 0, start);
      this.ends.splice(lo, 0, end);
    }
    return true;
  }
}
