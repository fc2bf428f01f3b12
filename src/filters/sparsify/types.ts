/** What the sparsify filter learns about each partition, and how free space is reported. */

/** A byte range [start, end). */
export interface Range {
  start: number;
  end: number;
}

/**
 * The free-space map of one filesystem. Offsets are relative to the start of the partition.
 * `free` yields ordered, non-overlapping runs inside [from, to) that the filesystem itself
 * marks free. Anything uncertain (a bitmap that cannot be read or fails its checksum) is
 * simply not reported: sparsify may keep too much, never drop too much.
 */
export interface FreeSpace {
  free(from: number, to: number): AsyncIterable<Range>;
}

/** What a probe decided about one partition (or the whole disk). */
export type Verdict =
  | { kind: 'sparsify'; filesystem: string; space: FreeSpace }
  | { kind: 'pass'; filesystem?: string; reason: string };

/** A region of the disk, as the partition table describes it. */
export interface Partition {
  /** 1-based number as in the table (0: the whole unpartitioned disk). */
  number: number;
  start: number;
  length: number;
  /** The partition type as the table names it ('gpt:<guid>', 'mbr:0x83', 'none'). */
  type: string;
  /** Set when the table alone says this partition must pass through (LVM, RAID, extended). */
  passReason?: string;
}

export interface PartitionLayout {
  scheme: 'gpt' | 'mbr' | 'none';
  partitions: Partition[];
  /** Table structures (MBR, GPT headers and entries) that are never dropped. */
  reserved: Range[];
  /** Set when the whole disk passes through (a table that cannot be trusted). */
  passReason?: string;
}
