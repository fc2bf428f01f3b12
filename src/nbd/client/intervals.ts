/**
 * Byte ranges a structured READ reply has filled so far. Chunks may come in any order but must
 * not overlap; merged, sorted runs keep the check cheap when chunks arrive in order (the usual
 * case) and correct when they do not.
 */
import { RunSet } from '../../io/run-set.js';

export class IntervalSet {
  private readonly runs = new RunSet();
  covered = 0;

  /** Adds [start, end); false if it overlaps a range already added. */
  add(start: number, end: number): boolean {
    if (this.runs.overlaps(start, end)) return false;
    this.covered += end - start;
    this.runs.add(start, end);
    return true;
  }
}
