/**
 * Whether a download whose first bytes are `head` could be a plain raw image: no compression,
 * archive or image-format magic. Such a download is hashed with blkhash as it streams; the
 * pull confirms it is raw once the whole file is there (a VHD footer, for one, is at the end).
 */
import { probeFormat } from '../formats/registry.js';
import '../formats/index.js';
import { detectCompression } from '../sources/decompress/detect.js';
import { looksLikeTar } from '../sources/tar-probe.js';

export function couldBeRaw(head: Uint8Array): boolean {
  return (
    !detectCompression(head) &&
    !looksLikeTar(head) &&
    probeFormat(head, Number.MAX_SAFE_INTEGER).name === 'raw'
  );
}
