import { SingleFlightLru } from '../../io/single-flight-lru.js';

/** A bounded LRU of loaded tables (L2 tables, decompressed clusters), keyed by host offset. */
export class TableCache<T> extends SingleFlightLru<number, T> {
  constructor(
    capacity: number,
    private readonly load: (key: number) => Promise<T>,
  ) {
    super(capacity);
  }

  /** The cached value for `key`, loading it (with `load`, else the default loader) if absent. */
  override get(key: number, load: (key: number) => Promise<T> = this.load): Promise<T> {
    return super.get(key, load);
  }
}

/** How many tables of `tableBytes` fit a memory budget (at least `min`). */
export function capacityFor(budgetBytes: number, tableBytes: number, min = 2): number {
  return Math.max(min, Math.floor(budgetBytes / tableBytes));
}
