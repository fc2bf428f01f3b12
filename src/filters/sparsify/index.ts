export { type SparsifiedPartition, SparsifyImage } from './image.js';
export { sparsify } from './open.js';
export { type SparsifiedPartitionReport, type SparsifyReport, sparsifyReport } from './report.js';
export type { FreeSpace, Partition, PartitionLayout, Range, Verdict } from './types.js';
