import type { Image } from '../../image/types.js';
import { SparsifyImage } from './image.js';

/** Wraps `image` in the sparsify filter; closes `image` if its partitions cannot be read. */
export async function sparsify(image: Image): Promise<SparsifyImage> {
  try {
    return await SparsifyImage.open(image);
  } catch (err) {
    await image.close();
    throw err;
  }
}
