export { GRAIN_SIZE, type VmdkSubformat } from './layout.js';
export { VmdkSparseWriter, type VmdkWriterOptions } from './sparse-writer.js';
export { VmdkStreamWriter } from './stream-writer.js';
