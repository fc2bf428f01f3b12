// diskpipe's public API: re-exports only. Every type an export mentions is exported too, and
// api/exports.txt lists the surface (test/api.test.ts fails when it changes by accident).

export {
  type CacheHttpOptions,
  type CachePullOptions,
  type CreateDiskOptions,
  DiskCache,
  type DiskCacheOptions,
} from './cache/disk-cache.js';
export type { DiskResult } from './cache/disks.js';
export type { CacheEvent, CacheEventListener } from './cache/events.js';
export { defaultCacheDir } from './cache/layout.js';
export type { PruneOptions, RemoveOptions, RemoveResult } from './cache/maintenance.js';
export type { PullResult } from './cache/pull.js';
export type {
  BadMark,
  BlobRecord,
  CacheEntry,
  Pin,
  PinState,
  SourceRecord,
} from './cache/records.js';
export type { VerifyOptions, VerifyResult } from './cache/verify.js';
export {
  AbortError,
  CacheError,
  ChecksumMismatchError,
  type CodedErrorClass,
  CorruptImageError,
  DiskpipeError,
  type DiskpipeErrorOptions,
  type ErrorCode,
  HttpError,
  IoError,
  NbdProtocolError,
  NotCapableError,
  NotFoundError,
  OutOfRangeError,
  UnsupportedFeatureError,
  UntrustedReferenceError,
  UsageError,
  WrongFormatError,
} from './errors.js';
export { CowImage, type CowOptions } from './filters/cow.js';
export type { BlockState, CowStore, CowStoreOptions } from './filters/cow-store.js';
export {
  type FreeSpace,
  type SparsifiedPartition,
  type SparsifiedPartitionReport,
  SparsifyImage,
  type SparsifyReport,
  sparsify,
  sparsifyReport,
} from './filters/sparsify/index.js';
export type {
  Partition,
  PartitionLayout,
  Range as ByteRange,
  Verdict as PartitionVerdict,
} from './filters/sparsify/types.js';
export { FileWriter, type WriterFile } from './formats/file-writer.js';
export type { Compression as Qcow2Compression } from './formats/qcow2/writer/header.js';
export { Qcow2Writer, type Qcow2WriterOptions } from './formats/qcow2/writer/index.js';
export type { Layout as Qcow2Layout } from './formats/qcow2/writer/layout.js';
export { RawImage } from './formats/raw.js';
export {
  type FormatDriver,
  formatNames,
  type OpenContext,
  registerFormat,
} from './formats/registry.js';
export {
  createWriter,
  type FormatOptions,
  type ImageWriter,
  type NewImage,
  OUTPUT_FORMATS,
  type OutputFormat,
  parseFormatOptions,
  type WriterFormat,
} from './formats/writers.js';
export { BaseImage, ImageWrapper } from './image/base.js';
export { clipExtents, collectExtents, mergeExtents } from './image/extents.js';
export { type ReferenceKind, type TrustOptions, TrustPolicy } from './image/trust.js';
export type {
  ByteSource,
  Capabilities,
  Extent,
  FormatDetails,
  Image,
  MapEntry,
  Progress,
  ProgressListener,
  ProgressPhase,
  SnapshotInfo,
  SourceWriter,
  ZeroOptions,
} from './image/types.js';
export { type FileRun, LocalFile } from './io/file.js';
export { nativeStatus, type SeekResult } from './io/native.js';
export { setWorkerScripts, type WorkerScript } from './io/worker-scripts.js';
export { NbdClient, type NbdClientOptions } from './nbd/client/connection.js';
export type { ExportInfo } from './nbd/client/handshake.js';
export {
  type NbdServer,
  type NbdServerOptions,
  type NbdServerStats,
  startNbdServer,
} from './nbd/server/index.js';
export type { NbdAddress } from './nbd/uri.js';
export { MAX_CHAIN_DEPTH, type OpenOptions, openImage, openImageOn } from './open.js';
export { type OpenedStream, openStream } from './open-stream.js';
export {
  BlkHash,
  type BlkHashOptions,
  BlockDigester,
  type BlockHasher,
  type ChecksumOptions,
  type ChecksumResult,
  checksumImage,
  checksumStream,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_DIGEST,
  DEFAULT_WINDOW_SIZE,
  type FileRange,
  type HashResult,
} from './ops/checksum/index.js';
export {
  type CloneOptions,
  type CloneResult,
  type CloneStrategy,
  cloneFile,
} from './ops/clone.js';
export { type CompareOptions, type CompareResult, compareImages } from './ops/compare.js';
export {
  type ConvertOptions,
  type ConvertResult,
  convertImage,
} from './ops/convert.js';
export {
  type CopyOptions,
  type CopyResult,
  type CopyTap,
  copyImage,
} from './ops/copy/index.js';
export { type CreateOptions, type CreateResult, createImage } from './ops/create.js';
export { describeChain, type ImageInfoJson, infoJson, type LayerInfo } from './ops/info.js';
export { mapEntryJson, mapImage } from './ops/map.js';
export type { DecompressOptions } from './sources/decompress/index.js';
export type { DownloadLimits } from './sources/download-limits.js';
export { HttpSource } from './sources/http.js';
export type { HttpClientOptions } from './sources/http-client.js';
export type { HttpOptions } from './sources/http-options.js';
export type { Validators as HttpValidators } from './sources/http-validators.js';
export type { RateLimits } from './sources/min-rate.js';
export { NbdSource } from './sources/nbd.js';
export type { SequentialSource } from './sources/sequential.js';
export type { StageOptions } from './sources/stage.js';
export type { StageLimitOptions } from './sources/stage-limit.js';
export type { UnwrapOptions } from './sources/unwrap.js';
