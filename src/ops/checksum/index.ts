// Content checksum compatible with blkhash/blksum.
export {
  BlkHash,
  type BlkHashOptions,
  BlockDigester,
  checkAlgorithm,
  checkBlockSize,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_DIGEST,
} from './blkhash.js';
export {
  type ChecksumOptions,
  type ChecksumResult,
  checksumImage,
  checksumStream,
  DEFAULT_WINDOW_SIZE,
} from './checksum.js';
export { OrderedBlkHash, type OrderedOptions } from './ordered.js';
export {
  type BlockHasher,
  type FileRange,
  HashPool,
  type HashResult,
  InlineHasher,
  sharedHashPool,
} from './pool.js';
