/**
 * Shared read locks on the local files of an image chain, for a long-running reader (`serve`):
 * a commit into a backing file or a resize of the top would change what its clients already
 * read (qemu-nbd -r holds the same locks).
 */
import type { Image } from '../image/types.js';
import { LocalFile } from './file.js';
import { lockForSharedRead } from './qemu-locks.js';

/**
 * Locks each layer of `image` read from a local file, from `firstDepth` down (1 skips a top
 * opened for writing: it holds the in-place edit locks already). The locks live on the
 * layers' own open files, so they end when the image is closed.
 */
export function lockChainForReading(image: Image, firstDepth = 0): void {
  let depth = 0;
  for (let layer: Image | undefined = image; layer; layer = layer.backing, depth++) {
    const source = layer.source;
    if (depth >= firstDepth && source instanceof LocalFile) {
      lockForSharedRead(source.fd, source.path);
    }
  }
}
