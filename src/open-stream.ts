/**
 * openStream: the entry point for one-pass consumers (convert to raw, checksum, pull). Raw
 * content inside compressed wrappers comes back as a stream, so it is never staged; anything
 * else comes back as an Image (random access, extents).
 */
import type { Image } from './image/types.js';
import { type OpenOptions, openImage, openOnSource } from './open.js';
import { openSource } from './sources/index.js';
import type { SequentialSource } from './sources/sequential.js';
import { unwrapSource, unwrapStdin } from './sources/unwrap.js';

export type OpenedStream =
  | { kind: 'stream'; stream: SequentialSource }
  | { kind: 'image'; image: Image };

export async function openStream(spec: string, opts: OpenOptions = {}): Promise<OpenedStream> {
  if (opts.format !== undefined || opts.writable) {
    return { kind: 'image', image: await openImage(spec, opts) };
  }
  const r =
    spec === '-'
      ? await unwrapStdin({ ...opts, preferStream: true })
      : await unwrapSource(
          await openSource(spec, {
            http: opts.http,
            ...(opts.refuseWritten && { refuseWritten: true }),
          }),
          {
            ...opts,
            preferStream: true,
          },
        );
  if (r.kind === 'stream') return r;
  return { kind: 'image', image: await openOnSource(r.source, r.untrusted, opts) };
}
