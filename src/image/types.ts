/**
 * The one interface every format, source and filter answers.
 * Offsets and lengths are byte counts as `number` (exact up to 2^53).
 */

/**
 * A run of guest-visible bytes. Flags describe the whole image as the guest sees it (the whole
 * backing chain), as NBD base:allocation does:
 * - `zero`: the bytes read as zeroes; only this lets an operation skip reading.
 * - `hole`: no storage is allocated anywhere for them (a hole that is not `zero` must be read).
 */
export interface Extent {
  offset: number;
  length: number;
  zero: boolean;
  hole: boolean;
}

export interface Capabilities {
  write: boolean;
  zero: boolean;
  trim: boolean;
  flush: boolean;
  /** The image can tell zero/hole ranges apart from data (else: one data extent). */
  extents: boolean;
}

export interface ZeroOptions {
  /** The range may be deallocated rather than written (it must still read as zeroes). */
  mayTrim?: boolean;
}

export interface Image {
  readonly format: string;
  /** Virtual size in bytes. */
  readonly size: number;
  readonly capabilities: Readonly<Capabilities>;
  /** Fills `buf` with the bytes at `offset`; never short (the range must lie inside the image). */
  read(buf: Uint8Array, offset: number): Promise<void>;
  /** Ordered, contiguous, non-empty extents exactly covering [offset, offset+length). */
  extents(offset?: number, length?: number): AsyncIterable<Extent>;
  write?(buf: Uint8Array, offset: number): Promise<void>;
  zero?(offset: number, length: number, opts?: ZeroOptions): Promise<void>;
  trim?(offset: number, length: number): Promise<void>;
  flush?(): Promise<void>;
  close(): Promise<void>;
  /** Richer allocation walk for `map` (qemu-img map semantics); optional. */
  mapping?(offset: number, length: number): AsyncIterable<MapEntry>;
  /** Format details for `info`; optional. */
  describe?(): FormatDetails;
  /** The next image in a backing chain, if any. */
  readonly backing?: Image | undefined;
  /** The bytes this image is stored in, when it has one (info's actual-size, map's file). */
  readonly source?: ByteSource | undefined;
}

/** One `qemu-img map --output=json` entry. */
export interface MapEntry {
  offset: number;
  length: number;
  /** Layer of the chain the data comes from (0 = this image). */
  depth: number;
  /** Some layer allocates this range (false: unallocated everywhere, reads as zeroes). */
  present: boolean;
  zero: boolean;
  data: boolean;
  /** Host offset in the file that holds the data, when there is one. */
  hostOffset?: number;
  compressed?: boolean;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  icount?: number;
}

/** What `info` shows about one layer; field meanings follow qemu-img info. */
export interface FormatDetails {
  format: string;
  virtualSize: number;
  /** Bytes the layer's own storage occupies on the host, when known. */
  actualSize?: number;
  clusterSize?: number;
  encrypted?: boolean;
  dirty?: boolean;
  corrupt?: boolean;
  backingFilename?: string;
  backingFormat?: string;
  /** Absolute path the backing reference resolved to. */
  fullBackingFilename?: string;
  dataFile?: string;
  /** Why referenced files (data file, extents) were not opened: the trust rule refused them. */
  refusedFiles?: string[];
  snapshots?: SnapshotInfo[];
  /** Format-specific fields (qemu-img's "format-specific" data), JSON-ready. */
  specific?: Record<string, unknown>;
}

/** Random-access bytes a format opens on: a file, an HTTP resource, an NBD export, a tar member. */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Reads up to buf.length bytes at offset; returns the count (short only at the end). */
  read(buf: Uint8Array, offset: number): Promise<number>;
  close(): Promise<void>;
  /** Local path when the source is a plain local file (for backing references, map offsets). */
  readonly path?: string;
  /** Host bytes allocated for the source, when known (`info` actual-size). */
  allocatedSize?(): Promise<number | undefined>;
  /**
   * Allocation of the bytes, when the source itself knows it (an NBD export's base:allocation).
   * RawImage reports these as its extents; formats inside the source ignore them.
   */
  extents?(offset: number, length: number): AsyncIterable<Extent>;
  /** The write side of a writable source that is not a local file (an NBD export). */
  readonly writer?: SourceWriter;
}

/** Writes to a non-file ByteSource; RawImage forwards its write/zero/trim/flush here. */
export interface SourceWriter {
  write(buf: Uint8Array, offset: number): Promise<void>;
  zero(offset: number, length: number, mayTrim: boolean): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
}

/**
 * Where a long operation is (copy/convert, compare, checksum, pull, createDisk), in one shape
 * for all of them: `done` of `total` bytes in `phase`. `total` is undefined when unknown (a
 * download without a length, a stream).
 */
export interface Progress {
  /**
   * `copy` (copy, convert, sparsify), `finish` (flush and rename after a copy), `compare`,
   * `checksum`, `download`, `convert` and `hash` (pull).
   */
  phase: ProgressPhase;
  /** Bytes handled so far (ranges that read as zeroes count too). */
  done: number;
  total: number | undefined;
}

export type ProgressPhase =
  | 'copy'
  | 'finish'
  | 'compare'
  | 'checksum'
  | 'download'
  | 'convert'
  | 'hash';

/** The progress callback every long operation takes. */
export type ProgressListener = (progress: Progress) => void;
