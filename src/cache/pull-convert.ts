/**
 * pull's converting side: probing, unwrapping and copying a download into the cache's raw
 * form. It pulls in the formats, codecs and copy engine (most of pull's modules), so pull.ts
 * loads it only once the download has been asked for: the modules load while the first
 * bytes arrive, instead of before the request is sent.
 */
import type { Image, ProgressListener } from '../image/types.js';
import { LocalFile } from '../io/file.js';
import { openImageOn } from '../open.js';
import type { GrowingFile } from '../sources/growing-file.js';
import { type UnwrapOptions, unwrapSource } from '../sources/unwrap.js';
import { type Converted, convertAlongside } from './overlap.js';
import { type StoredRaw, type StoreProgress, storeImage, storeStream } from './store-raw.js';

export type { Converted } from './overlap.js';

/** What converting needs of the pull's options. */
export interface ConvertOptions {
  onProgress?: ProgressListener | undefined;
  stage?: UnwrapOptions | undefined;
  signal?: AbortSignal | undefined;
  sparsify?: boolean | undefined;
}

/** Converts the download while it arrives (overlap.ts), as pull asks for it. */
export function convertDownload(
  growing: GrowingFile,
  tmp: string,
  opts: ConvertOptions,
): Promise<Converted | undefined> {
  return convertAlongside(
    growing,
    tmp,
    storeProgress(opts),
    wrapFor(opts),
    !opts.sparsify,
    opts.stage,
  );
}

/**
 * The download as the cache's raw file, when it is one: nothing wraps it and it probes as raw
 * (the stream hash only saw its first bytes; a VHD footer, for one, sits at the end).
 */
export async function plainRaw(
  part: string,
  contentDigest: string,
  stage: UnwrapOptions | undefined,
): Promise<Converted | undefined> {
  const unwrapped = await unwrapSource(
    { source: await LocalFile.open(part, 'r'), untrusted: true },
    { ...stage, preferStream: true },
  );
  if (unwrapped.kind === 'stream') {
    await unwrapped.stream.close();
    return undefined;
  }
  const image = await openImageOn(unwrapped.source, { untrusted: true });
  try {
    if (image.format !== 'raw' || unwrapped.layers.length > 0) return undefined;
    const file = await LocalFile.open(part, 'r');
    const allocatedSize = await file.allocatedSize().finally(() => file.close());
    const stored: StoredRaw = {
      contentDigest,
      virtualSize: image.size,
      allocatedSize,
      written: 0,
    };
    return { stored, sourceFormat: 'raw', layers: [] as string[] };
  } finally {
    await image.close();
  }
}

function storeProgress(opts: ConvertOptions): StoreProgress {
  return (phase, done, total) => opts.onProgress?.({ phase, done, total });
}

/** Opens the download untrusted, unwraps compression/archives, and writes the raw result. */
export async function convertToRaw(
  input: string,
  tmp: string,
  opts: ConvertOptions,
): Promise<Converted> {
  const progress = storeProgress(opts);
  // Sparsify reads the filesystems' maps wherever they are: raw content is staged for it.
  const unwrapped = await unwrapSource(
    { source: await LocalFile.open(input, 'r'), untrusted: true },
    {
      ...opts.stage,
      ...(opts.signal && { signal: opts.signal }),
      preferStream: !opts.sparsify,
    },
  );
  if (unwrapped.kind === 'stream') {
    try {
      const stored = await storeStream(unwrapped.stream, tmp, progress, opts.signal);
      return { stored, sourceFormat: 'raw', layers: [...unwrapped.stream.layers] };
    } finally {
      await unwrapped.stream.close();
    }
  }
  const opened = await openImageOn(unwrapped.source, { untrusted: true });
  const image = await wrapFor(opts)(opened).catch(async (err) => {
    await opened.close();
    throw err;
  });
  try {
    const stored = await storeImage(image, tmp, progress, opts.signal);
    return { stored, sourceFormat: opened.format, layers: unwrapped.layers };
  } finally {
    await image.close();
  }
}

/** How the opened source image is wrapped before it is stored (sparsify loads only if asked). */
function wrapFor(opts: ConvertOptions): (image: Image) => Promise<Image> {
  if (!opts.sparsify) return async (image) => image;
  return async (image) => (await import('../filters/sparsify/index.js')).sparsify(image);
}
