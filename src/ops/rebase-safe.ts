/**
 * Safe `rebase -b NEW -F FMT IMAGE`: IMAGE keeps showing the same guest content over a new
 * backing file. Every range IMAGE does not allocate itself is compared between the old chain
 * and NEW; where they differ, the old content is written into IMAGE (through the in-place
 * qcow2 writer). Only then is the backing reference rewritten (rebase -u's header rewrite),
 * so a crash in between leaves IMAGE reading exactly as before.
 * NEW passes the trust rule before anything is written; `-b ''` flattens IMAGE (no backing).
 */

import { realpathSync } from 'node:fs';
import { UnsupportedFeatureError, UsageError } from '../errors.js';
import { type TrustOptions, TrustPolicy } from '../image/trust.js';
import type { Image } from '../image/types.js';
import { isZero } from '../io/bytes.js';
import { openImage } from '../open.js';
import { refuseBackingLoop } from './backing-target.js';
import type { Range } from './copy-ranges.js';
import { refuseNonLocal } from './local-path.js';
import { rebaseUnsafe, refuseLoopThrough } from './rebase.js';

export interface RebaseSafeOptions {
  /** Format of NEW (-F); required unless NEW is '' (as rebase -u). */
  backingFormat?: string;
  trust?: TrustOptions;
}

/** Rewrites IMAGE's backing reference in its header (rebase -u); called after the data. */
export type ReferenceWriter = (
  path: string,
  backing: string,
  opts: { backingFormat?: string; trust?: TrustOptions },
) => Promise<void>;

export interface RebaseSafeResult {
  /** Guest bytes compared between the old and the new backing. */
  bytesCompared: number;
  /** Guest bytes written into IMAGE where they differed. */
  bytesWritten: number;
}

/** Compare granularity: differences are copied in pieces of this size (qemu uses clusters). */
const PIECE = 64 * 1024;

export async function rebaseSafe(
  path: string,
  backing: string,
  opts: RebaseSafeOptions = {},
  writeReference: ReferenceWriter = rebaseUnsafe,
): Promise<RebaseSafeResult> {
  refuseNonLocal(path, 'rebase');
  const trust = opts.trust ?? {};
  if (backing !== '' && opts.backingFormat === undefined) {
    throw new UsageError('-F FMT is required with -b (the backing format is stored, as qemu-img)');
  }
  let newPath: string | undefined;
  if (backing !== '') {
    newPath = TrustPolicy.forImage(trust, path).resolve(backing, path, 'backing file');
    if (newPath === realpathSync(path))
      throw new UsageError(`${path} cannot be its own backing file`);
    // Before IMAGE is locked for the edit: a chain that holds IMAGE is a loop, not a file
    // another program writes.
    await refuseLoopThrough(path, newPath, opts.backingFormat, trust, backing);
  }
  const image = await openImage(path, { ...trust, format: 'qcow2', writable: true });
  let result: RebaseSafeResult;
  try {
    if (!image.mapping)
      throw new UnsupportedFeatureError(`${path}: rebase works on qcow2 images only`);
    const next =
      newPath === undefined
        ? undefined
        : await openImage(newPath, {
            ...trust,
            format: opts.backingFormat === 'vpc' ? 'vhd' : opts.backingFormat,
          });
    try {
      if (next) await refuseBackingLoop(path, next, backing);
      result = await copyDifferences(image, next);
      await image.flush?.();
    } finally {
      await next?.close();
    }
  } finally {
    await image.close();
  }
  await writeReference(path, backing, {
    ...(opts.backingFormat !== undefined ? { backingFormat: opts.backingFormat } : {}),
    trust,
  });
  return result;
}

/** Writes into `image` the unallocated ranges where its backing chain and `next` differ. */
async function copyDifferences(image: Image, next: Image | undefined): Promise<RebaseSafeResult> {
  const below: Range[] = [];
  for await (const e of image.mapping!(0, image.size)) {
    if (e.depth > 0 || !e.present) below.push({ offset: e.offset, length: e.length, zero: e.zero });
  }
  const old = new Uint8Array(PIECE);
  const now = new Uint8Array(PIECE);
  let compared = 0;
  let written = 0;
  for (const r of below) {
    // Zeroes over no backing at all: nothing can differ.
    if (r.zero && next === undefined) continue;
    for (let pos = r.offset; pos < r.offset + r.length; ) {
      const n = Math.min(PIECE - (pos % PIECE), r.offset + r.length - pos);
      const a = old.subarray(0, n);
      const b = now.subarray(0, n);
      if (r.zero) a.fill(0);
      else await image.read(a, pos);
      await readOrZero(next, b, pos);
      compared += n;
      if (!equal(a, b)) {
        if (isZero(a)) await image.zero!(pos, n);
        else await image.write!(a, pos);
        written += n;
      }
      pos += n;
    }
  }
  return { bytesCompared: compared, bytesWritten: written };
}

/** Reads `next` at `offset`; past its end (or with no backing) the guest sees zeroes. */
async function readOrZero(next: Image | undefined, buf: Uint8Array, offset: number) {
  const n = next ? Math.max(0, Math.min(buf.length, next.size - offset)) : 0;
  if (n > 0) await next!.read(buf.subarray(0, n), offset);
  buf.fill(0, n);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(
    Buffer.from(b.buffer, b.byteOffset, b.length),
  );
}
