/** What `info --sparsify` and `map --sparsify` say: per partition, what is dropped and why. */
import type { SparsifyImage } from './image.js';

export interface SparsifiedPartitionReport {
  number: number;
  start: number;
  length: number;
  type: string;
  filesystem?: string;
  /** 'sparsify': free blocks read as zeroes; 'pass': the partition is copied unchanged. */
  action: 'sparsify' | 'pass';
  reason?: string;
  /** Bytes the filesystem marks free. */
  freeBytes?: number;
  /** Free bytes the image below holds as data: what sparsify drops. */
  droppedBytes?: number;
}

export interface SparsifyReport {
  partitionTable: 'gpt' | 'mbr' | 'none';
  /** Set when the whole disk passes through. */
  reason?: string;
  partitions: SparsifiedPartitionReport[];
  droppedBytes: number;
}

export async function sparsifyReport(image: SparsifyImage): Promise<SparsifyReport> {
  const report: SparsifyReport = {
    partitionTable: image.layout.scheme,
    partitions: [],
    droppedBytes: 0,
  };
  if (image.layout.passReason) report.reason = image.layout.passReason;
  const below = image.below;
  for (const p of image.partitions) {
    const entry: SparsifiedPartitionReport = {
      number: p.number,
      start: p.start,
      length: p.length,
      type: p.type,
      action: p.verdict.kind,
    };
    if (p.verdict.filesystem !== undefined) entry.filesystem = p.verdict.filesystem;
    if (p.verdict.kind === 'pass') {
      entry.reason = p.verdict.reason;
    } else {
      const end = Math.min(p.start + p.length, image.size);
      let free = 0;
      for await (const r of image.freeRuns(p.start, end)) free += r.end - r.start;
      let dropped = 0;
      for await (const e of below.extents(p.start, end - p.start)) {
        if (e.zero) continue;
        for await (const r of image.freeRuns(e.offset, e.offset + e.length))
          dropped += r.end - r.start;
      }
      entry.freeBytes = free;
      entry.droppedBytes = dropped;
      report.droppedBytes += dropped;
    }
    report.partitions.push(entry);
  }
  return report;
}
