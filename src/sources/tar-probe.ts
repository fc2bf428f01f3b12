/**
 * Whether a file starts with a tar header: the one piece of tar every source needs (each is
 * probed for it), kept apart from the archive reader, which loads only for an archive.
 */

/** A tar header (and data) block. */
export const BLOCK = 512;

/** True when `head` (at least 512 bytes of a file) is a tar header; `name` may help. */
export function looksLikeTar(head: Uint8Array, name = ''): boolean {
  if (head.length < BLOCK) return false;
  const magic = ascii(head.subarray(257, 262));
  if (magic === 'ustar') return checksumOk(head);
  // Old (v7) archives have no magic: trust the name, then the checksum.
  return /\.(tar|ova)$/i.test(name) && checksumOk(head);
}

/** Bytes as Latin-1 text (tar header fields). */
export function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

/** Whether a header block's checksum field matches its bytes (either signedness). */
export function checksumOk(block: Uint8Array): boolean {
  const stored = parseOctal(block.subarray(148, 156));
  if (stored === undefined) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** A NUL/space-padded octal field; 0 when empty, undefined when not octal. */
export function parseOctal(field: Uint8Array): number | undefined {
  const text = ascii(field)
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (!/^[0-7]+$/.test(text)) return text === '' ? 0 : undefined;
  const v = Number.parseInt(text, 8);
  return Number.isSafeInteger(v) ? v : undefined;
}
