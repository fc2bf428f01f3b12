/**
 * A bounded LRU of loaded tables (L2 tables, decompressed clusters), keyed by host offset.
 * Concurrent requests for the same key share one load; a failed load is not cached.
 */
export class TableCache<T> {
  private readonly entries = new Map<number, Promise<T>>();

  constructor(
    private readonly capacity: number,
    private readonly load: (key: number) => Promise<T>,
  ) {}

  /** The cached value for `key`, loading it (with `load`, else the default loader) if absent. */
  get(key: number, load: (key: number) => Promise<T> = this.load): Promise<T> {
    const hit = this.entries.get(key);
    if (hit) {
      // Re-insert to mark as most recently used (Map keeps insertion order).
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const loading = load(key);
    this.entries.set(key, loading);
    loading.catch(() => {
      if (this.entries.get(key) === loading) this.entries.delete(key);
    });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as number;
      this.entries.delete(oldest);
    }
    return loading;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** How many tables of `tableBytes` fit a memory budget (at least `min`). */
export function capacityFor(budgetBytes: number, tableBytes: number, min = 2): number {
  return Math.max(min, Math.floor(budgetBytes / tableBytes));
}
