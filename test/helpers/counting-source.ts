/**
 * Counts the reads a format makes on its file: tests bound work by operations and bytes, never
 * by wall-clock time (which measures the machine, not the code).
 */
import type { ByteSource, Image } from '../../src/image/types.js';
import { type OpenOptions, openOnSource, openUnwrapped } from '../../src/open.js';

export interface ReadCount {
  calls: number;
  bytes: number;
}

/**
 * The same source with `read` counted. A Proxy keeps the source's class (formats test
 * `instanceof LocalFile`) and binds every other method to the real object.
 */
export function countReads(source: ByteSource, count: ReadCount): ByteSource {
  return new Proxy(source, {
    get(target, prop) {
      if (prop === 'read') {
        return async (buf: Uint8Array, offset: number) => {
          count.calls++;
          const n = await target.read(buf, offset);
          count.bytes += n;
          return n;
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Opens an image like openImage, adding the reads on its own file (not on its backing files)
 * to `reads`, also those made by an open that fails.
 */
export async function openCounted(
  spec: string,
  reads: ReadCount,
  opts: OpenOptions = {},
): Promise<Image> {
  const { source, untrusted } = await openUnwrapped(spec, opts);
  return openOnSource(countReads(source, reads), untrusted, opts);
}
