/**
 * The writer's L2 tables: each table gets its host cluster when first touched, lives in a
 * small write-back cache, and is written to that cluster when evicted (and read back if
 * touched again). Memory is bounded by the cache capacity, not by the image size.
 */
import { CorruptImageError } from '../../../errors.js';
import type { LocalFile } from '../../../io/file.js';
import type { HostSpace } from './host-space.js';
import { COPIED, entryOffset, readEntry, writeEntry } from './layout.js';

interface Table {
  data: Buffer;
  offset: number;
  dirty: boolean;
}

export class L2Cache {
  private readonly tables = new Map<number, Table>();

  constructor(
    private readonly file: LocalFile,
    private readonly space: HostSpace,
    /** The L1 table, kept in memory (at most 32 MiB, qemu's own limit). */
    readonly l1: Buffer,
    private readonly capacity: number,
  ) {}

  /**
   * The L2 table for L1 index `i`, or undefined if it does not exist and `create` is false.
   * Callers must serialise calls (the writer holds its metadata lock).
   */
  async get(i: number, create: boolean): Promise<Buffer | undefined> {
    const cached = this.tables.get(i);
    if (cached) {
      // Re-insert to mark as most recently used.
      this.tables.delete(i);
      this.tables.set(i, cached);
      return cached.data;
    }
    const { hi, lo } = readEntry(this.l1, i);
    const offset = entryOffset(hi, lo);
    let table: Table;
    if (offset !== 0) {
      const data = Buffer.alloc(this.space.clusterSize);
      const n = await this.file.read(data, offset);
      if (n !== data.length) throw new CorruptImageError(`L2 table at ${offset} was cut short`);
      table = { data, offset, dirty: false };
    } else {
      if (!create) return undefined;
      const at = this.space.allocCluster();
      writeEntry(this.l1, i, at, COPIED);
      table = { data: Buffer.alloc(this.space.clusterSize), offset: at, dirty: true };
    }
    this.tables.set(i, table);
    await this.evict();
    return table.data;
  }

  markDirty(i: number): void {
    const t = this.tables.get(i);
    if (t) t.dirty = true;
  }

  /** Writes every dirty table (they stay cached). */
  async flush(): Promise<void> {
    for (const t of this.tables.values()) {
      if (!t.dirty) continue;
      await this.file.write(t.data, t.offset);
      t.dirty = false;
    }
  }

  private async evict(): Promise<void> {
    while (this.tables.size > this.capacity) {
      const [i, t] = this.tables.entries().next().value as [number, Table];
      this.tables.delete(i);
      if (t.dirty) await this.file.write(t.data, t.offset);
    }
  }
}
