/**
 * `rebase -u`: rewrites the backing file reference (name and format) in a qcow2 header in
 * place, without touching any data, as qemu-img rebase -u. The new reference must pass the
 * trust rule, so diskpipe never writes a reference it would refuse to follow.
 */
import { realpathSync } from 'node:fs';
import { type DiskpipeError, UnsupportedFeatureError, UsageError } from '../errors.js';
import { hasQcowMagic } from '../formats/qcow2/header.js';
import { formatDriver } from '../formats/registry.js';
import '../formats/index.js';
import { type TrustOptions, TrustPolicy } from '../image/trust.js';
import type { Image } from '../image/types.js';
import { LocalFile } from '../io/file.js';
import { lockForInPlaceEdit } from '../io/qemu-locks.js';
import { refuseReadOnlyImage } from '../io/read-only-image.js';
import { openImage } from '../open.js';
import { refuseBackingLoop } from './backing-target.js';
import { refuseNonLocal } from './local-path.js';
import { readHeader, readZeroFilled } from './qcow2/file.js';

const EXT_BACKING_FORMAT = 0xe2792aca;
const MAX_BACKING_NAME = 1023;

export interface RebaseOptions {
  /** Format of the new backing file; required unless `backing` is '' (no backing file). */
  backingFormat?: string;
  trust?: TrustOptions;
}

/** Points `path` at `backing` ('' removes the backing file); data is not changed. */
export async function rebaseUnsafe(
  path: string,
  backing: string,
  opts: RebaseOptions = {},
): Promise<void> {
  const format = backing === '' ? undefined : backingFormatName(opts.backingFormat);
  if (Buffer.byteLength(backing) > MAX_BACKING_NAME) {
    throw new UsageError(`backing file name is longer than ${MAX_BACKING_NAME} bytes`);
  }
  refuseNonLocal(path, 'rebase');
  const file = await LocalFile.open(path, 'r+');
  try {
    refuseReadOnlyImage(file.fd, path);
    lockForInPlaceEdit(file.fd, path);
    const probe = await readZeroFilled(file, 0, Math.min(8, file.size));
    if (!hasQcowMagic(probe)) {
      throw new UnsupportedFeatureError(`${path}: rebase works on qcow2 images only`);
    }
    const h = await readHeader(file);
    if (backing !== '') {
      const target = TrustPolicy.forImage(opts.trust ?? {}, path).resolve(
        backing,
        path,
        'backing file',
      );
      if (target === realpathSync(path)) {
        throw new UsageError(`${path} cannot be its own backing file`);
      }
      await refuseLoopThrough(path, target, format, opts.trust ?? {}, backing);
    }
    const cs = h.clusterSize;
    const head = await readZeroFilled(file, 0, Math.min(cs, file.size));
    const out = new Uint8Array(head.length);
    out.set(head.subarray(0, h.headerLength));
    const dv = new DataView(out.buffer);
    let pos = h.headerLength;
    const put = (type: number, data: Uint8Array) => {
      const padded = Math.ceil(data.length / 8) * 8;
      if (pos + 8 + padded > out.length) throw tooBig(path);
      dv.setUint32(pos, type);
      dv.setUint32(pos + 4, data.length);
      out.set(data, pos + 8);
      pos += 8 + padded;
    };
    if (format !== undefined) put(EXT_BACKING_FORMAT, new TextEncoder().encode(format));
    for (const ext of extensions(head, h.headerLength)) {
      if (ext.type !== EXT_BACKING_FORMAT) put(ext.type, ext.data);
    }
    if (pos + 8 > out.length) throw tooBig(path);
    pos += 8; // end of extensions (zeroes)
    const name = new TextEncoder().encode(backing);
    if (pos + name.length > out.length) throw tooBig(path);
    out.set(name, pos);
    dv.setBigUint64(8, name.length === 0 ? 0n : BigInt(pos));
    dv.setUint32(16, name.length);
    await file.write(out, 0);
    await file.sync();
  } finally {
    await file.close();
  }
}

/**
 * A chain that already holds IMAGE would loop once IMAGE points at it. A backing file that
 * cannot be opened is not checked further: -u is for fixing references, and stores it anyway.
 * The chain is opened only to walk it (no data is read), so qemu's write locks are not
 * checked: IMAGE itself, locked for this edit, would otherwise look written by another
 * program, and the loop would go unseen.
 */
export async function refuseLoopThrough(
  path: string,
  target: string,
  format: string | undefined,
  trust: TrustOptions,
  name: string,
): Promise<void> {
  let image: Image;
  try {
    image = await openImage(target, {
      ...trust,
      refuseWritten: false,
      format: format === 'vpc' ? 'vhd' : format,
    });
  } catch {
    return;
  }
  try {
    await refuseBackingLoop(path, image, name);
  } finally {
    await image.close();
  }
}

/** qemu's name for the format ("vpc" for VHD), checked against the formats diskpipe knows. */
function backingFormatName(format: string | undefined): string {
  if (format === undefined) {
    throw new UsageError('-F FMT is required with -b (the backing format is stored, as qemu-img)');
  }
  const name = format === 'vhd' ? 'vpc' : format;
  if (!formatDriver(name)) throw new UsageError(`unknown backing format '${format}'`);
  return name;
}

/** The header extensions as stored (unknown ones are kept as they are). */
function extensions(head: Uint8Array, start: number): Array<{ type: number; data: Uint8Array }> {
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const out: Array<{ type: number; data: Uint8Array }> = [];
  let pos = start;
  while (pos + 8 <= head.length) {
    const type = dv.getUint32(pos);
    const len = dv.getUint32(pos + 4);
    if (type === 0) break;
    out.push({ type, data: head.slice(pos + 8, pos + 8 + len) });
    pos += 8 + Math.ceil(len / 8) * 8;
  }
  return out;
}

function tooBig(path: string): DiskpipeError {
  return new UsageError(`${path}: the new backing file name does not fit in the header cluster`);
}
