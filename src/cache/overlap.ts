/**
 * Converting while downloading: when the first bytes of a download show an image format
 * (qcow2, vmdk, vhdx, vdi, dynamic vhd), the converter opens the growing partial file and
 * copies while the rest arrives; its reads wait for the bytes they need. Raw downloads are
 * hashed in the download pass instead, and compressed or archived ones are converted after
 * the download, so those return undefined here.
 */
import { PROBE_BYTES, probeFormat } from '../formats/registry.js';
import type { Image } from '../image/types.js';
import { openImageOn } from '../open.js';
import { detectCompression } from '../sources/decompress/index.js';
import { DownloadGoneError, type GrowingFile } from '../sources/growing-file.js';
import { looksLikeTar } from '../sources/tar.js';
import { type StoredRaw, type StoreProgress, storeImage } from './store-raw.js';

export interface Converted {
  stored: StoredRaw;
  sourceFormat: string;
  layers: string[];
}

export async function convertAlongside(
  growing: GrowingFile,
  tmp: string,
  onProgress?: StoreProgress,
  /** Wraps the opened image before it is stored (pull --sparsify). */
  wrap: (image: Image) => Promise<Image> = async (image) => image,
): Promise<Converted | undefined> {
  try {
    await growing.waitFor(PROBE_BYTES);
  } catch (err) {
    if (err instanceof DownloadGoneError) return undefined;
    throw err;
  }
  if (!growing.sizeKnown || growing.size === 0) return undefined;
  const head = new Uint8Array(Math.min(PROBE_BYTES, growing.size));
  await growing.read(head, 0);
  const format = probeFormat(head, growing.size).name;
  if (detectCompression(head) || looksLikeTar(head) || format === 'raw') return undefined;
  // The head names the format: probing again would also read the file's tail (DMG, fixed
  // VHD trailers), which waits for the end of the download.
  const opened = await openImageOn(growing, { untrusted: true, format });
  const image = await wrap(opened).catch(async (err) => {
    await opened.close();
    throw err;
  });
  try {
    const stored = await storeImage(image, tmp, onProgress);
    return { stored, sourceFormat: opened.format, layers: [] };
  } finally {
    await image.close();
  }
}
