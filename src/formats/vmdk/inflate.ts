/**
 * Inflates one compressed grain on the libuv thread pool, so several grains inflate in
 * parallel. qemu (zlib compress()) and VMware write zlib-wrapped deflate streams; a bare
 * deflate stream is accepted too.
 */
import { promisify } from 'node:util';
import { inflate, inflateRaw } from 'node:zlib';
import { CorruptImageError } from '../../errors.js';

const inflateZlib = promisify(inflate);
const inflateBare = promisify(inflateRaw);
const MIN_CHUNK = 64;

/** RFC 1950 header: deflate method, 32K window or less, header check multiple of 31. */
function isZlibWrapped(data: Uint8Array): boolean {
  const cmf = data[0];
  const flg = data[1];
  if (cmf === undefined || flg === undefined) return false;
  return (cmf & 0x0f) === 8 && cmf >> 4 <= 7 && ((cmf << 8) | flg) % 31 === 0;
}

/** Inflates `data` into at most `maxBytes` bytes; anything malformed is a CorruptImageError. */
export async function inflateGrain(
  data: Uint8Array,
  maxBytes: number,
  where: string,
): Promise<Buffer> {
  try {
    const run = isZlibWrapped(data) ? inflateZlib : inflateBare;
    // One output chunk of a whole grain: one trip to the thread pool instead of one per 16 KiB.
    const chunkSize = Math.max(MIN_CHUNK, maxBytes);
    return await run(data, { maxOutputLength: maxBytes, chunkSize });
  } catch (err) {
    const why = (err as Error).message ?? String(err);
    throw new CorruptImageError(`${where}: compressed grain does not inflate (${why})`);
  }
}
