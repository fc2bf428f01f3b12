/**
 * Converting while downloading: when the first bytes of a download show an image format
 * (qcow2, vmdk, vhdx, vdi, dynamic vhd), the converter opens the growing partial file and
 * copies while the rest arrives; its reads wait for the bytes they need. A compressed or
 * archived download is unwrapped as it arrives too: raw content inside streams through
 * decompress → zero-detect → sparse write → hash in one pass (anything else is staged, as
 * after a download). Raw downloads are hashed in the download pass instead: undefined here.
 */
import { PROBE_BYTES, probeFormat } from '../formats/registry.js';
import type { ByteSource, Image } from '../image/types.js';
import { openImageOn } from '../open.js';
import { detectCompression } from '../sources/decompress/index.js';
import { DownloadGoneError, type GrowingFile } from '../sources/growing-file.js';
import { looksLikeTar } from '../sources/tar-probe.js';
import { type UnwrapOptions, unwrapSource } from '../sources/unwrap.js';
import { startHashWorkers } from './copy-pass-hash.js';
import { type StoredRaw, type StoreProgress, storeImage, storeStream } from './store-raw.js';

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
  /** Unwrap compressed/archived downloads while they arrive (not for --sparsify). */
  unwrap = true,
  /** How they are unwrapped (decoder choice and memory, staging), as after a download. */
  stage: UnwrapOptions = {},
): Promise<Converted | undefined> {
  preloadQcow2Reader();
  try {
    await growing.waitFor(PROBE_BYTES);
  } catch (err) {
    if (err instanceof DownloadGoneError) return undefined;
    throw err;
  }
  if (!growing.sizeKnown || growing.size === 0) return undefined;
  const head = new Uint8Array(Math.min(PROBE_BYTES, growing.size));
  await growing.read(head, 0);
  if (detectCompression(head) || looksLikeTar(head)) {
    return unwrap ? await unwrapAlongside(growing, tmp, onProgress, wrap, stage) : undefined;
  }
  const format = probeFormat(head, growing.size).name;
  if (format === 'raw') return undefined;
  // The content hash's workers start while the image's metadata arrives.
  startHashWorkers();
  // The head names the format: probing again would also read the file's tail (DMG, fixed
  // VHD trailers), which waits for the end of the download.
  const opened = await openImageOn(growing, { untrusted: true, format });
  const image = await wrap(opened).catch(async (err) => {
    await opened.close();
    throw err;
  });
  try {
    // The converter follows the download: data in the order it arrives.
    const stored = await storeImage(image, tmp, onProgress, undefined, 'host');
    return { stored, sourceFormat: opened.format, layers: [] };
  } finally {
    await image.close();
  }
}

/**
 * Starts loading the qcow2 reader (42 modules, with the decode engine) while the request is
 * out, before the first bytes say which format it is: cloud images are mostly qcow2. Loaded
 * once the body streams, the same import took 0.2-0.8 s instead of ~30 ms (each module's
 * read and link waits its turn behind the download's work on the event loop), and the
 * converter started that much behind the download. A pull of anything else pays ~30 ms of
 * CPU for it.
 */
function preloadQcow2Reader(): void {
  import('../formats/qcow2/index.js').catch(() => {});
}

/** A wrapped download: raw content inside is streamed to `tmp`, anything else staged first. */
async function unwrapAlongside(
  growing: GrowingFile,
  tmp: string,
  onProgress: StoreProgress | undefined,
  wrap: (image: Image) => Promise<Image>,
  stage: UnwrapOptions,
): Promise<Converted> {
  // The growing file stays open for pull.ts to close: unwrapping closes what it is given.
  const source: ByteSource = {
    name: growing.name,
    size: growing.size,
    read: (buf, offset) => growing.read(buf, offset),
    close: async () => {},
  };
  const unwrapped = await unwrapSource(
    { source, untrusted: true },
    { ...stage, preferStream: true },
  );
  if (unwrapped.kind === 'stream') {
    try {
      const stored = await storeStream(unwrapped.stream, tmp, onProgress);
      return { stored, sourceFormat: 'raw', layers: [...unwrapped.stream.layers] };
    } finally {
      await unwrapped.stream.close();
    }
  }
  const opened = await openImageOn(unwrapped.source, { untrusted: true });
  const image = await wrap(opened).catch(async (err) => {
    await opened.close();
    throw err;
  });
  try {
    const stored = await storeImage(image, tmp, onProgress);
    return { stored, sourceFormat: opened.format, layers: unwrapped.layers };
  } finally {
    await image.close();
  }
}
