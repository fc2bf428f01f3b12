/**
 * A bounded least-recently-used cache of loads, in flight or done: concurrent gets of one key
 * share one load, so memory stays bounded however large a table claims to be. A failed load is
 * forgotten, so it is retried rather than remembered. Used for qcow2 L2 tables, VHD/VHDX/QED
 * table pages and the sparsify filter's bitmaps and tree blocks.
 */
export class SingleFlightLru<K, V> {
  private readonly entries = new Map<K, Promise<V>>();

  constructor(private readonly capacity: number) {}

  get(key: K, load: (key: K) => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit) {
      // Re-insert to mark as most recently used (a Map keeps insertion order).
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
      const oldest = this.entries.keys().next().value as K;
      this.entries.delete(oldest);
    }
    return loading;
  }

  clear(): void {
    this.entries.clear();
  }
}
