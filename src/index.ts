// diskpipe's public API: re-exports only.
export * from './errors.js';
export type { ByteSource, Capabilities, Extent, FormatDetails, Image, MapEntry, SnapshotInfo, ZeroOptions } from './image/types.js';
export { BaseImage, ImageWrapper, checkRange } from './image/base.js';
export { clipExtents, collectExtents, mergeExtents } from './image/extents.js';
export { TrustPolicy, type TrustOptions } from './image/trust.js';
export { MAX_CHAIN_DEPTH, type OpenOptions, openImage, openImageOn } from './open.js';
export { type FormatDriver, type OpenContext, formatNames, registerFormat } from './formats/registry.js';
export { RawImage } from './formats/raw.js';
export { LocalFile } from './io/file.js';
export { nativeStatus } from './io/native.js';
export { writeAtomically } from './io/atomic.js';
export { type ImageInfoJson, type LayerInfo, describeChain, infoJson } from './ops/info.js';
export { AllocationBar, mapEntryJson, mapImage } from './ops/map.js';
