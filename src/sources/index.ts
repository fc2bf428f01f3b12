import { UnsupportedFeatureError } from '../errors.js';
import { LocalFile } from '../io/file.js';
import { lockForInPlaceEdit, refuseWritten } from '../io/qemu-locks.js';
import { refuseReadOnlyImage } from '../io/read-only-image.js';
import type { OpenedSource, SourceOptions } from './opened.js';

export type { OpenedSource, SourceOptions };

type SourceOpener = (spec: string, opts: SourceOptions) => Promise<OpenedSource>;

const schemes = new Map<string, SourceOpener>();

/** Adds a URL scheme (http, https, nbd, nbd+unix...) as a byte source. */
export function registerScheme(scheme: string, opener: SourceOpener): void {
  schemes.set(scheme, opener);
}

export function schemeOf(spec: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(spec);
  return m?.[1]?.toLowerCase();
}

/** Opens an IMAGE argument (a path or a URL) as random-access bytes. */
export async function openSource(spec: string, opts: SourceOptions = {}): Promise<OpenedSource> {
  const scheme = schemeOf(spec);
  if (scheme === undefined || scheme === 'file') {
    const path = scheme === 'file' ? decodeURIComponent(new URL(spec).pathname) : spec;
    const file = await LocalFile.open(path, opts.writable ? 'r+' : 'r');
    try {
      // Writing into an image a VM or qemu-nbd has open corrupts it (qemu refuses too).
      if (opts.writable) {
        refuseReadOnlyImage(file.fd, path);
        lockForInPlaceEdit(file.fd, path);
      } else if (opts.refuseWritten) refuseWritten(file.fd, path);
    } catch (err) {
      await file.close();
      throw err;
    }
    return { source: file, untrusted: false };
  }
  const opener = schemes.get(scheme);
  if (!opener) throw new UnsupportedFeatureError(`${scheme}:// sources are not supported`);
  return opener(spec, opts);
}

// Loaded on first use: a command on a local file never pays for the HTTP and NBD clients.
const openHttp: SourceOpener = async (spec, opts) =>
  (await import('./http.js')).openHttp(spec, opts);
const openNbd: SourceOpener = async (spec, opts) => (await import('./nbd.js')).openNbd(spec, opts);
registerScheme('http', openHttp);
registerScheme('https', openHttp);
registerScheme('nbd', openNbd);
registerScheme('nbd+unix', openNbd);
