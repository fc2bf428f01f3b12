/**
 * The trust rule for file references stored inside images (qcow2 backing and data files, VMDK
 * extents). See DESIGN.md "Trust": untrusted images may not reference files at all; a local
 * image may reference files inside its own directory tree, the diskpipe cache, or a directory
 * the user allowed with --allow-backing.
 */
import { realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { ioError, UntrustedReferenceError } from '../errors.js';
import { defaultCacheDir } from '../io/cache-dir.js';

export interface TrustOptions {
  /** Treat the image as coming from an untrusted source: no references at all. */
  untrusted?: boolean;
  /** Extra directories references may point into (--allow-backing, DISKPIPE_ALLOW_BACKING). */
  allowBacking?: string[];
  /** The diskpipe cache directory (its files are always allowed targets). */
  cacheDir?: string;
}

export type ReferenceKind = 'backing file' | 'data file' | 'extent file';

export class TrustPolicy {
  private constructor(
    readonly untrusted: boolean,
    private readonly roots: string[],
    private readonly why: string,
  ) {}

  /** A policy for an image the user named at `imagePath` (undefined for non-file sources). */
  static forImage(opts: TrustOptions, imagePath?: string, untrustedSource = false): TrustPolicy {
    const allowed = [...(opts.allowBacking ?? []), ...envAllowed()];
    const roots = [
      ...(imagePath ? [dirname(realOrSelf(imagePath))] : []),
      // The cache is always trusted: disks made by `disk create` are overlays on cached files.
      ...[opts.cacheDir, defaultCacheDir()].filter((d) => d !== undefined).map(realOrSelf),
      ...allowed.map(realOrSelf),
    ];
    const untrusted = opts.untrusted === true || untrustedSource;
    const why = opts.untrusted
      ? 'the image is opened with --untrusted'
      : 'the image comes from an untrusted source';
    return new TrustPolicy(untrusted, roots, why);
  }

  /**
   * Resolves a reference stored in an image at `referrer` (a local path, or undefined) to an
   * absolute host path, or throws an error naming the path and the flag that would allow it.
   */
  resolve(ref: string, referrer: string | undefined, kind: ReferenceKind): string {
    if (this.untrusted) {
      throw new UntrustedReferenceError(
        `${kind} reference '${ref}' refused: ${this.why} and may not reference other files`,
      );
    }
    if (ref.length === 0 || ref.includes('\0'))
      throw new UntrustedReferenceError(`invalid ${kind} reference`);
    if (/^[a-z][a-z0-9+.-]*:/i.test(ref) && !isAbsolute(ref)) {
      throw new UntrustedReferenceError(
        `${kind} '${ref}' is a protocol reference; diskpipe only follows local files`,
      );
    }
    if (!referrer && !isAbsolute(ref)) {
      throw new UntrustedReferenceError(
        `${kind} '${ref}' is relative, but the image is not a local file`,
      );
    }
    const target = isAbsolute(ref) ? ref : resolve(dirname(referrer!), ref);
    let real: string;
    try {
      real = realpathSync(target);
    } catch (err) {
      throw ioError(err, `${kind} '${ref}' cannot be opened`);
    }
    if (!this.roots.some((root) => isInside(real, root))) {
      throw new UntrustedReferenceError(
        `${kind} '${ref}' (${real}) is outside the image's directory; allow it with --allow-backing ${dirname(real)}`,
      );
    }
    if (!statSync(real).isFile()) {
      throw new UntrustedReferenceError(`${kind} '${ref}' (${real}) is not a regular file`);
    }
    return real;
  }
}

function envAllowed(): string[] {
  const v = process.env.DISKPIPE_ALLOW_BACKING;
  return v ? v.split(':').filter((s) => s.length > 0) : [];
}

function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

function isInside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}
