export type { Compression } from './header.js';
export { DEFAULT_CLUSTER_SIZE, isValidClusterSize } from './layout.js';
export { Qcow2Writer, type Qcow2WriterOptions } from './writer.js';
