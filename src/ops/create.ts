/**
 * create: a new sparse raw image, an empty qcow2, vmdk, vhdx, vpc or vdi image, or a qcow2
 * overlay on a backing file. The image is written under a temporary name and renamed into place; a DEST that is
 * not a regular file (a device, FIFO, directory...) is refused.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { Qcow2Writer } from '../formats/qcow2/writer/index.js';
import {
  clusterSizeOption,
  createWriter,
  type FormatOptions,
  isWriterFormat,
  type OutputFormat,
  outputFormat,
} from '../formats/writers.js';
import type { TrustOptions } from '../image/trust.js';
import { writeAtomically } from '../io/atomic.js';
import { destinationKind } from '../io/destination.js';
import { LocalFile } from '../io/file.js';
import { openImage } from '../open.js';
import { refuseReplacingBacking } from './backing-target.js';

export interface CreateOptions {
  /** Default qcow2 when a backing file is given, else raw. */
  format?: OutputFormat;
  /** Format options (-o), as for convert. */
  formatOptions?: FormatOptions;
  /** Virtual size in bytes; defaults to the backing file's size. */
  size?: number;
  /** Backing file, stored as given; a relative path is relative to the image's directory. */
  backing?: string;
  /** The backing file's format (probed when absent). */
  backingFormat?: string;
  /** qcow2 cluster size (default 64 KiB). */
  clusterSize?: number;
  trust?: TrustOptions;
}

export interface CreateResult {
  format: OutputFormat;
  size: number;
  backing?: { file: string; format: string };
}

export async function createImage(path: string, opts: CreateOptions = {}): Promise<CreateResult> {
  const requested = opts.format ?? (opts.backing !== undefined ? 'qcow2' : 'raw');
  const options = opts.formatOptions ?? {};
  const format = outputFormat(requested, options, `cannot create '${requested}' images`);
  if (format !== 'qcow2' && opts.backing !== undefined) {
    throw new UsageError(`a ${format} image cannot have a backing file here (use -f qcow2)`);
  }
  let size = opts.size;
  let backing: CreateResult['backing'];
  if (opts.backing !== undefined) {
    // Opened to check it and learn its size and format; stored exactly as given.
    const where = isAbsolute(opts.backing)
      ? opts.backing
      : resolve(dirname(resolve(path)), opts.backing);
    const image = await openImage(where, { ...opts.trust, format: opts.backingFormat });
    try {
      await refuseReplacingBacking(path, image, opts.backing);
      size ??= image.size;
      backing = { file: opts.backing, format: image.format };
    } finally {
      await image.close();
    }
  }
  if (size === undefined) throw new UsageError('an image size is needed (or a backing file)');
  if (!Number.isSafeInteger(size) || size < 0) throw new UsageError(`invalid size ${size}`);
  const final = size;
  let created = format === 'qcow2' ? roundSector(final) : final;
  await destinationKind(path, { blockDevice: false }); // refuses devices, FIFOs, directories
  await writeAtomically(
    path,
    async (tmp) => {
      const file = await LocalFile.open(tmp, 'w+');
      if (format === 'raw') {
        try {
          await file.truncate(final);
        } finally {
          await file.close();
        }
        return;
      }
      if (isWriterFormat(format)) {
        let w: Awaited<ReturnType<typeof createWriter>>;
        try {
          w = await createWriter(format, file, { size: final, path, options });
        } catch (err) {
          await file.close();
          throw err;
        }
        created = w.size; // a format may round the size up (sectors, VHD geometry)
        await w.close();
        return;
      }
      let writer: Qcow2Writer;
      try {
        writer = await Qcow2Writer.create(file, {
          size: final,
          clusterSize: clusterSizeOption(opts.clusterSize, options),
          backingFile: backing?.file,
          backingFormat: backing?.format,
        });
      } catch (err) {
        await file.close();
        throw err;
      }
      await writer.close();
    },
    { final: true },
  );
  const result: CreateResult = { format, size: created };
  if (backing) result.backing = backing;
  return result;
}

function roundSector(n: number): number {
  return Math.ceil(n / 512) * 512;
}
