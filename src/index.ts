// diskpipe's public API: re-exports only.
export * from './errors.js';
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
export { MAX_CHAIN_DEPTH, type OpenOptions, openImage, openImageOn } from './open.js';
export * from './ops/checksum/index.js';
export { describeChain, type ImageInfoJson, infoJson, type LayerInfo } from './ops/info.js';
export { AllocationBar, mapEntryJson, mapImage } from './ops/map.js';
export { type OpenedStream, openStream } from './sources/open-stream.js';
export type { SequentialSource } from './sources/sequential.js';
