// diskpipe's public API: re-exports only.

export { createDisk, type DiskOptions, type DiskResult } from './cache/disks.js';
export { CacheLayout, defaultCacheDir } from './cache/layout.js';
export { prune, removeEntry } from './cache/maintenance.js';
export { type PullOptions, type PullResult, pull } from './cache/pull.js';
export {
  type BlobRecord,
  type CacheEntry,
  CacheIndex,
  type SourceRecord,
} from './cache/records.js';
export { verifyEntry } from './cache/verify.js';
export * from './errors.js';
export {
  type FreeSpace,
  type SparsifiedPartition,
  type SparsifiedPartitionReport,
  SparsifyImage,
  type SparsifyReport,
  sparsify,
  sparsifyReport,
} from './filters/sparsify/index.js';
export { Qcow2Writer, type Qcow2WriterOptions } from './formats/qcow2/writer/index.js';
export { RawImage } from './formats/raw.js';
export {
  type FormatDriver,
  formatNames,
  type OpenContext,
  registerFormat,
} from './formats/registry.js';
export { BaseImage, checkRange, ImageWrapper } from './image/base.js';
export { clipExtents, collectExtents, mergeExtents } from './image/extents.js';
export { type TrustOptions, TrustPolicy } from './image/trust.js';
export type {
  ByteSource,
  Capabilities,
  Extent,
  FormatDetails,
  Image,
  MapEntry,
  SnapshotInfo,
  ZeroOptions,
} from './image/types.js';
export { writeAtomically } from './io/atomic.js';
export { LocalFile } from './io/file.js';
export { nativeStatus } from './io/native.js';
export {
  type NbdServer,
  type NbdServerOptions,
  type NbdServerStats,
  startNbdServer,
} from './nbd/server/index.js';
export { MAX_CHAIN_DEPTH, type OpenOptions, openImage, openImageOn } from './open.js';
export * from './ops/checksum/index.js';
export { type CloneOptions, type CloneResult, cloneFile } from './ops/clone.js';
export { type CompareOptions, compareImages } from './ops/compare.js';
export { type ConvertOptions, type ConvertResult, convertImage } from './ops/convert.js';
export {
  type CopyOptions,
  type CopyProgress,
  type CopyResult,
  copyImage,
} from './ops/copy/index.js';
export { type CreateOptions, type CreateResult, createImage } from './ops/create.js';
export { describeChain, type ImageInfoJson, infoJson, type LayerInfo } from './ops/info.js';
export { AllocationBar, mapEntryJson, mapImage } from './ops/map.js';
export { NbdSource } from './sources/nbd.js';
export { type OpenedStream, openStream } from './sources/open-stream.js';
export type { SequentialSource } from './sources/sequential.js';
