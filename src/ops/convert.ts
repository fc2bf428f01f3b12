/**
 * convert: copies an image into a new raw, qcow2, vmdk, vhdx, vpc or vdi file (written under a
 * temporary name and renamed when complete; the last four through the writer registry), into
 * an existing image in place (-n), onto a block device in place
 * (raw, size checked), or as raw bytes into a stream (stdout). Built on the copy engine, so
 * zeroes are never read, and written only where the target may not read as zero already.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { OutOfRangeError, UsageError } from '../errors.js';
import type { Compression, Qcow2Writer } from '../formats/qcow2/writer/index.js';
import { RawImage } from '../formats/raw.js';
import {
  canStream,
  clusterSizeOption,
  createStreamWriter,
  createWriter,
  type FormatOptions,
  isWriterFormat,
  type OutputFormat,
  outputFormat,
  type WriterFormat,
  writerIsOrdered,
} from '../formats/writers.js';
import type { TrustOptions } from '../image/trust.js';
import type { Image } from '../image/types.js';
import { throwIfAborted } from '../io/abort.js';
import { writeAtomically } from '../io/atomic.js';
import { markOutputCommitted } from '../io/cleanup.js';
import { type DestinationKind, destinationKind } from '../io/destination.js';
import { LocalFile } from '../io/file.js';
import { openImage } from '../open.js';
import type { SequentialSource } from '../sources/sequential.js';
import { refuseReplacingBacking } from './backing-target.js';
import { copyStreamToFile } from './copy/from-stream.js';
import { type CopyOptions, type CopyResult, copyImage } from './copy/index.js';
import { resolveCopyOptions } from './copy/options.js';
import { StreamTarget } from './copy/stream-target.js';
import { refuseWritingSource } from './source-target.js';

export type { OutputFormat } from '../formats/writers.js';

export interface ConvertOptions
  extends Pick<
    CopyOptions,
    | 'requestSize'
    | 'inFlight'
    | 'sparseSize'
    | 'copyRange'
    | 'blockingWrites'
    | 'onProgress'
    | 'signal'
  > {
  /** Output format (-O), default raw. */
  format?: OutputFormat;
  /** Format options (-o), qemu-img's names: vmdk subformat, vpc subformat/force_size... */
  formatOptions?: FormatOptions;
  /** Compress qcow2 clusters (-c). */
  compress?: boolean;
  /** Compression type for -c (default deflate). */
  compression?: Compression;
  /** qcow2 cluster size (default 64 KiB). */
  clusterSize?: number;
  /**
   * Backing file for a qcow2 output (-B), stored as given; a relative path is relative to
   * the output's directory. Only clusters that differ from it are written.
   */
  backing?: string;
  /** The backing file's format (probed when absent). */
  backingFormat?: string;
  /** Write into the existing image DST in place (-n): no create, no rename. */
  existing?: boolean;
  /**
   * With `existing` or a block device: the target already reads as zeroes, so zero ranges
   * are skipped.
   */
  targetIsZero?: boolean;
  /** Trust options for opening the backing file and an existing target. */
  trust?: TrustOptions;
  /** Stream for DST `-` (default process.stdout). */
  stdout?: Writable;
  /**
   * fdatasync the output before renaming it (or, with -n, when done). Default false, like
   * qemu-img convert (whose default target cache mode never flushes).
   */
  sync?: boolean;
}

export interface ConvertResult extends CopyResult {
  format: OutputFormat;
  /** The output path, or '-' for the stream. */
  output: string;
}

function check(dst: string, o: ConvertOptions, kind: DestinationKind | 'stream'): OutputFormat {
  const requested = o.format ?? 'raw';
  const refusal = `output format '${requested}' is not supported`;
  const format = outputFormat(requested, o.formatOptions ?? {}, refusal);
  if (o.existing && isWriterFormat(format)) {
    throw new UsageError(`-n writes into raw or qcow2 images only, not ${format}`);
  }
  const qcow2Only = (what: string, set: boolean) => {
    if (set && format !== 'qcow2') throw new UsageError(`${what} needs -O qcow2`);
  };
  qcow2Only('-c (compression)', o.compress === true);
  qcow2Only('-B (backing file)', o.backing !== undefined);
  qcow2Only('--cluster-size', o.clusterSize !== undefined);
  if (o.targetIsZero && !o.existing && kind !== 'block-device') {
    throw new UsageError('--target-is-zero needs -n (or a block device destination)');
  }
  if (kind === 'block-device' && format !== 'raw') {
    throw new UsageError(`only raw output can be written onto the block device ${dst}`);
  }
  if (o.existing && (o.backing !== undefined || o.compress || o.clusterSize !== undefined)) {
    throw new UsageError(
      '-n writes into an existing image: -B, -c and --cluster-size do not apply',
    );
  }
  const streamable = format === 'raw' || canStream(format, o.formatOptions ?? {});
  if (dst === '-' && (!streamable || o.existing)) {
    throw new UsageError(
      'only raw or streamOptimized vmdk output (without -n) can be written to stdout',
    );
  }
  return format;
}

function tuning(o: ConvertOptions): CopyOptions {
  const c: CopyOptions = {};
  if (o.requestSize !== undefined) c.requestSize = o.requestSize;
  if (o.inFlight !== undefined) c.inFlight = o.inFlight;
  if (o.sparseSize !== undefined) c.sparseSize = o.sparseSize;
  if (o.copyRange !== undefined) c.copyRange = o.copyRange;
  if (o.blockingWrites !== undefined) c.blockingWrites = o.blockingWrites;
  if (o.onProgress) c.onProgress = o.onProgress;
  if (o.signal) c.signal = o.signal;
  return c;
}

/** Converts the open image `src` into `dst` (a path, or '-' for stdout). */
export async function convertImage(
  src: Image,
  dst: string,
  opts: ConvertOptions = {},
): Promise<ConvertResult> {
  throwIfAborted(opts.signal, 'convert');
  const kind = dst === '-' ? 'stream' : await destinationKind(dst, { blockDevice: true });
  const format = check(dst, opts, kind);
  const copy = tuning(opts);
  resolveCopyOptions(copy); // bad tuning is refused before anything is created
  const job: Job = { src, dst, opts, copy };
  if (kind === 'block-device' || (opts.existing && kind !== 'stream')) {
    await refuseWritingSource(dst, src);
  }
  if (kind === 'block-device') return { ...(await ontoDevice(job)), format, output: dst };
  if (dst === '-' && isWriterFormat(format)) {
    return { ...(await toStream(job, format)), format, output: dst };
  }
  if (dst === '-') {
    const target = new StreamTarget(opts.stdout ?? process.stdout, src.size);
    const r = await copyImage(src, target, { ...copy, ordered: true });
    return { ...r, format, output: dst };
  }
  if (opts.existing) return { ...(await intoExisting(job, format)), format, output: dst };
  const r = await writeAtomically(
    dst,
    (tmp) =>
      format === 'raw'
        ? toRaw(job, tmp)
        : format === 'qcow2'
          ? toQcow2(job, tmp)
          : toWriter(job, format, tmp),
    { final: true },
  );
  return { ...r, format, output: dst };
}

/**
 * Whether convertStream can take this conversion: raw output into a new regular file (not
 * stdout, not -n, not a block device). Anything else opens the source as an image.
 */
export async function canConvertStream(dst: string, opts: ConvertOptions = {}): Promise<boolean> {
  if ((opts.format ?? 'raw') !== 'raw' || opts.existing || dst === '-') return false;
  return (await destinationKind(dst, { blockDevice: true })) !== 'block-device';
}

/**
 * Converts a sequential raw stream (a compressed wrapper's output) into a new raw file in one
 * pass: written as it decompresses, zero blocks left as holes, no staged copy.
 */
export async function convertStream(
  stream: SequentialSource,
  dst: string,
  opts: ConvertOptions = {},
): Promise<ConvertResult> {
  if (!(await canConvertStream(dst, opts))) {
    throw new UsageError(`a stream can only be converted into a new raw file, not ${dst}`);
  }
  const format = check(dst, opts, 'file');
  const r = await writeAtomically(
    dst,
    async (tmp) => {
      const file = await LocalFile.open(tmp, 'w+');
      try {
        const done = await copyStreamToFile(stream, file, {
          ...(opts.sparseSize !== undefined && { sparseSize: opts.sparseSize }),
          ...(opts.onProgress && { onProgress: opts.onProgress }),
          ...(opts.signal && { signal: opts.signal }),
        });
        if (opts.sync === true) await file.sync();
        return done;
      } finally {
        await file.close();
      }
    },
    { final: true },
  );
  return { ...r, format, output: dst };
}

/** One conversion, as every output path needs it. */
interface Job {
  src: Image;
  /** The final path (a writer may record its own name). */
  dst: string;
  opts: ConvertOptions;
  copy: CopyOptions;
}

/**
 * The tail every output path shares: copy (the job's tuning plus `more`), report the finish
 * phase, then `complete` makes the target whole (flush, close, commit). The caller still
 * releases the target in any case.
 */
async function copyInto(
  job: Job,
  target: Image,
  more: CopyOptions,
  complete: () => Promise<void>,
): Promise<CopyResult> {
  const { src, opts } = job;
  const r = await copyImage(src, target, { ...job.copy, ...more });
  opts.onProgress?.({ phase: 'finish', done: src.size, total: src.size });
  await complete();
  return r;
}

/** Opens `tmp` for a new image writer; the file is closed when the writer cannot be made. */
async function newWriter<W>(tmp: string, create: (file: LocalFile) => Promise<W>): Promise<W> {
  const file = await LocalFile.open(tmp, 'w+');
  try {
    return await create(file);
  } catch (err) {
    await file.close();
    throw err;
  }
}

/**
 * A block device is written in place: opened exclusively, at least the image's size (the
 * rest of a larger device is left alone), zero ranges zeroed unless `targetIsZero`, flushed.
 */
async function ontoDevice(job: Job): Promise<CopyResult> {
  const { src, dst, opts } = job;
  const file = await LocalFile.openBlockDevice(dst);
  const target = new RawImage(file);
  try {
    if (file.size < src.size) {
      throw new OutOfRangeError(
        `${dst} is too small: the device has ${file.size} bytes, the image needs ${src.size}`,
      );
    }
    const targetIsZero = opts.targetIsZero === true;
    return await copyInto(job, target, { targetIsZero }, async () => {
      await target.flush();
      markOutputCommitted();
    });
  } finally {
    await target.close();
  }
}

async function intoExisting(job: Job, format: OutputFormat): Promise<CopyResult> {
  const { opts } = job;
  const target = await openImage(job.dst, { ...opts.trust, format, writable: true });
  try {
    const targetIsZero = opts.targetIsZero === true;
    return await copyInto(job, target, { targetIsZero }, async () => {
      if (opts.sync === true) await target.flush?.();
      markOutputCommitted();
    });
  } finally {
    await target.close();
  }
}

async function toRaw(job: Job, tmp: string): Promise<CopyResult> {
  const file = await LocalFile.open(tmp, 'w+');
  const target = new RawImage(file);
  try {
    await file.truncate(job.src.size);
    return await copyInto(job, target, { targetIsZero: true }, async () => {
      if (job.opts.sync === true) await target.flush();
    });
  } finally {
    await target.close();
  }
}

async function toQcow2(job: Job, tmp: string): Promise<CopyResult> {
  const { src, dst, opts } = job;
  let base: Image | undefined;
  if (opts.backing !== undefined) {
    const path = isAbsolute(opts.backing)
      ? opts.backing
      : resolve(dirname(resolve(dst)), opts.backing);
    base = await openImage(path, { ...opts.trust, format: opts.backingFormat });
  }
  let writer: Qcow2Writer | undefined;
  try {
    if (base) await refuseReplacingBacking(dst, base, opts.backing!);
    // Loaded here, not at startup: a raw → raw convert never needs the qcow2 writer's modules.
    const { Qcow2Writer } = await import('../formats/qcow2/writer/index.js');
    writer = await newWriter(tmp, (file) =>
      Qcow2Writer.create(file, {
        size: src.size,
        clusterSize: clusterSizeOption(opts.clusterSize, opts.formatOptions ?? {}),
        compress: opts.compress === true,
        compression: opts.compression,
        backingFile: opts.backing,
        backingFormat: base?.format,
        backing: base,
        sync: opts.sync === true,
      }),
    );
    const w = writer;
    const alignment = w.layout.clusterSize;
    return await copyInto(job, w, { alignment, targetIsZero: true, base }, () => w.close());
  } finally {
    await writer?.discard();
    await base?.close();
  }
}

/** vmdk, vhdx, vpc, vdi: a registered writer, fed in offset order when the format needs it. */
async function toWriter(job: Job, format: WriterFormat, tmp: string): Promise<CopyResult> {
  const options = job.opts.formatOptions ?? {};
  const sync = job.opts.sync === true;
  const writer = await newWriter(tmp, (file) =>
    createWriter(format, file, { size: job.src.size, path: job.dst, options, sync }),
  );
  try {
    // An ordered writer is told about zero ranges too (it must see every offset in turn).
    const ordered = writerIsOrdered(format, options);
    return await copyInto(job, writer, { targetIsZero: !ordered, ordered }, () => writer.close());
  } finally {
    await writer.discard();
  }
}

/** A streamOptimized vmdk sent to stdout front to back (e.g. into a tar for an OVA). */
async function toStream(job: Job, format: WriterFormat): Promise<CopyResult> {
  const out = job.opts.stdout ?? process.stdout;
  const options = job.opts.formatOptions ?? {};
  const size = job.src.size;
  const writer = await createStreamWriter(format, out, { size, path: '-', options });
  try {
    return await copyInto(job, writer, { ordered: true }, () => writer.close());
  } finally {
    await writer.discard();
  }
}
