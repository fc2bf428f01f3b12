/**
 * Formats diskpipe recognises but does not read. Probing them by magic keeps such images from
 * ever being read as raw: opening one fails with "<name> images are not supported".
 */
import { UnsupportedFeatureError } from '../errors.js';
import type { FormatDriver } from './registry.js';

function startsWith(head: Uint8Array, magic: string | readonly number[]): boolean {
  const bytes = typeof magic === 'string' ? [...magic].map((c) => c.charCodeAt(0)) : magic;
  return head.length >= bytes.length && bytes.every((b, i) => head[i] === b);
}

function refused(
  name: string,
  probe: (head: Uint8Array) => boolean,
  probeTail?: (tail: Uint8Array) => boolean,
): FormatDriver {
  return {
    name,
    probe,
    ...(probeTail ? { probeTail } : {}),
    open: async (source) => {
      // A raw disk's first or last sector can hold such a header as guest data.
      throw new UnsupportedFeatureError(
        `${source.name}: ${name} images are not supported (-f raw reads the bytes as they are)`,
      );
    },
  };
}

export const refusedDrivers: FormatDriver[] = [
  // Parallels: 'WithoutFreeSpace' (v2) or 'WithouFreSpacExt' (expanding, v2 extended).
  refused(
    'parallels',
    (h) => startsWith(h, 'WithoutFreeSpace') || startsWith(h, 'WithouFreSpacExt'),
  ),
  refused('bochs', (h) => startsWith(h, 'Bochs Virtual HD Image')),
  // cloop images start with a shell script that mounts them, then a version line.
  refused('cloop', (h) => /^#!\/bin\/sh\n#V\d\.\d Format\n/.test(asText(h.subarray(0, 64)))),
  refused('luks', (h) => startsWith(h, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe])),
  // Apple disk images end with a 512-byte 'koly' trailer: version 4, header size 512.
  refused(
    'dmg',
    () => false,
    (t) => startsWith(t, 'koly') && u32(t, 4) === 4 && u32(t, 8) === 512,
  ),
];

function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at);
}

function asText(b: Uint8Array): string {
  return String.fromCharCode(...b);
}
