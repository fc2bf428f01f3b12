/** A cluster written in pieces: its bytes so far and which ranges have been written. */
export class PartialCluster {
  readonly data: Buffer;
  /** Written ranges [from, to), sorted and merged. */
  private written: [number, number][] = [];

  constructor(size: number) {
    this.data = Buffer.alloc(size);
  }

  add(at: number, bytes: Uint8Array): void {
    this.data.set(bytes, at);
    let from = at;
    let to = at + bytes.length;
    const kept: [number, number][] = [];
    for (const [a, b] of this.written) {
      if (b < from || a > to) kept.push([a, b]);
      else {
        from = Math.min(from, a);
        to = Math.max(to, b);
      }
    }
    kept.push([from, to]);
    kept.sort((x, y) => x[0] - y[0]);
    this.written = kept;
  }

  get covered(): number {
    return this.written.reduce((n, [a, b]) => n + (b - a), 0);
  }

  ranges(): [number, number][] {
    return this.written.map(([a, b]) => [a, b]);
  }

  /** The ranges of [0, length) not written yet. */
  gaps(length: number): [number, number][] {
    const out: [number, number][] = [];
    let pos = 0;
    for (const [a, b] of this.written) {
      if (a > pos) out.push([pos, Math.min(a, length)]);
      pos = Math.max(pos, b);
    }
    if (pos < length) out.push([pos, length]);
    return out.filter(([a, b]) => b > a);
  }
}
