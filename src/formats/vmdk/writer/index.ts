export { GRAIN_SIZE, type VmdkSubformat } from './layout.js';
export { type SequentialSink, StreamSink } from './sequential-sink.js';
export { VmdkSparseWriter, type VmdkWriterOptions } from './sparse-writer.js';
export { VmdkStreamWriter } from './stream-writer.js';
