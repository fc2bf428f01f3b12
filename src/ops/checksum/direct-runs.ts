/**
 * Where an image's bytes sit verbatim in a local file, so that a hash worker reads (maps) and
 * hashes them itself: no window buffer, no read on this thread, no copy. A raw file is
 * verbatim everywhere (its holes read as zeroes too); a qcow2 image is verbatim in its
 * uncompressed clusters of this layer (qemu-img map's `offset`). Everything else is read
 * through the image as before.
 */
import { RawImage } from '../../formats/raw.js';
import type { Extent, Image } from '../../image/types.js';
import { LocalFile } from '../../io/file.js';

/** A stretch of the image: zeroes, or data that is file[host, host + length) when `host` is set. */
export interface DirectRun extends Extent {
  host?: number | undefined;
}

export interface DirectSource {
  file: LocalFile;
  /**
   * Whether the zero ranges also read as zeroes from the file at the same place (a raw file's
   * holes): then a window mixing data and zeroes is one file range too.
   */
  zeroesInFile: boolean;
  runs: AsyncIterable<DirectRun>;
}

/** The image's runs with their file offsets, or undefined when no range can be hashed in place. */
export async function directSource(image: Image): Promise<DirectSource | undefined> {
  if (image instanceof RawImage && image.source instanceof LocalFile) {
    return { file: image.source, zeroesInFile: true, runs: rawRuns(image) };
  }
  if (image.format !== 'qcow2') return undefined;
  // Loaded already when the image is qcow2 (format drivers load lazily).
  const { Qcow2Image } = await import('../../formats/qcow2/image.js');
  if (!(image instanceof Qcow2Image)) return undefined;
  const file = image.source;
  // With an external data file, offsets point into that file, not this one.
  if (!(file instanceof LocalFile) || image.header.dataFile !== undefined) return undefined;
  return { file, zeroesInFile: false, runs: qcow2Runs(image, file.size) };
}

async function* rawRuns(image: Image): AsyncGenerator<DirectRun> {
  for await (const e of image.extents(0, image.size)) {
    yield e.zero ? e : { ...e, host: e.offset };
  }
}

/**
 * qemu-img map's entries: this layer's uncompressed clusters have a host offset. A cluster
 * that runs past the end of the file (read as zeroes there) is left to the image's read.
 */
async function* qcow2Runs(
  image: Required<Pick<Image, 'mapping'>> & Image,
  fileSize: number,
): AsyncGenerator<DirectRun> {
  for await (const e of image.mapping(0, image.size)) {
    const run: DirectRun = { offset: e.offset, length: e.length, zero: e.zero, hole: !e.data };
    const verbatim = e.depth === 0 && e.data && !e.zero && !e.compressed;
    if (verbatim && e.hostOffset !== undefined && e.hostOffset + e.length <= fileSize) {
      run.host = e.hostOffset;
    }
    yield run;
  }
}
