/** What the server offers: one image under one name, and how its state maps to NBD. */
import { DiskpipeError } from '../../errors.js';
import type { Image } from '../../image/types.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  TF_CAN_MULTI_CONN,
  TF_HAS_FLAGS,
  TF_READ_ONLY,
  TF_SEND_CACHE,
  TF_SEND_DF,
  TF_SEND_FAST_ZERO,
  TF_SEND_FLUSH,
  TF_SEND_FUA,
  TF_SEND_TRIM,
  TF_SEND_WRITE_ZEROES,
} from '../protocol.js';

export interface ServedExport {
  readonly image: Image;
  readonly name: string;
  readonly writable: boolean;
  /** Largest READ/WRITE payload accepted (advertised in NBD_INFO_BLOCK_SIZE). */
  readonly maxPayload: number;
}

/** The block size constraints we advertise: any alignment, 4 KiB preferred. */
export const MIN_BLOCK = 1;
export const PREFERRED_BLOCK = 4096;

/**
 * Transmission flags. Multi-conn is safe in every mode: all connections share one Image and
 * the server keeps no per-connection cache, so a flush on one covers writes from all.
 */
export function transmissionFlags(exp: ServedExport, structured: boolean): number {
  let flags = TF_HAS_FLAGS | TF_CAN_MULTI_CONN | TF_SEND_CACHE;
  if (structured) flags |= TF_SEND_DF;
  if (!exp.writable) return flags | TF_READ_ONLY;
  return (
    flags | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES | TF_SEND_FAST_ZERO
  );
}

/** The NBD error value for a failure of the image. */
export function errorValue(err: unknown): number {
  if (!(err instanceof DiskpipeError)) return NBD_EIO;
  switch (err.code) {
    case 'OUT_OF_RANGE':
      return NBD_EINVAL;
    case 'NOT_CAPABLE':
      return NBD_EPERM;
    default: {
      const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code;
      return cause === 'ENOSPC' || cause === 'EDQUOT' || cause === 'EFBIG' ? NBD_ENOSPC : NBD_EIO;
    }
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
