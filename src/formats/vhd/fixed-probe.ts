/**
 * Recognising a fixed VHD, whose only structure is a footer in its last 512 bytes. The last
 * sector of a raw disk belongs to its guest, so a footer alone never makes a file a VHD:
 * probing also wants the name (.vhd/.vpc); otherwise `info` only suggests `-f vpc`.
 */
import type { ByteSource } from '../../image/types.js';
import { DISK_FIXED, FOOTER_SIZE, hasCookie, parseFooter } from './footer.js';

/** A valid fixed-disk footer (cookie, checksum, type) whose size matches the file's. */
export function looksLikeFixedVhd(tail: Uint8Array, fileSize: number): boolean {
  if (tail.length !== FOOTER_SIZE || !hasCookie(tail, 'conectix')) return false;
  const footer = parseFooter(tail);
  return (
    footer !== null &&
    footer.diskType === DISK_FIXED &&
    footer.currentSize + BigInt(FOOTER_SIZE) === BigInt(fileSize)
  );
}

/** Names that say "VHD": a path or URL ending in .vhd or .vpc (query and fragment ignored). */
export function hasVhdName(name: string): boolean {
  return /\.(vhd|vpc)$/i.test(name.replace(/[?#].*$/s, ''));
}

/** Whether a source read as raw ends in a fixed-VHD footer (for `info`'s hint). */
export async function endsWithFixedVhdFooter(source: ByteSource): Promise<boolean> {
  if (source.size < FOOTER_SIZE) return false;
  const tail = new Uint8Array(FOOTER_SIZE);
  if ((await source.read(tail, source.size - FOOTER_SIZE)) !== FOOTER_SIZE) return false;
  return looksLikeFixedVhd(tail, source.size);
}
