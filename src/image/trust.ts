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
  /** Extra directories references may point into (the CLI: --allow-backing, DISKPIPE_ALLOW_BACKING). */
  allowBacking?: string[];
  /** The diskpipe cache directory (its files are always allowed targets; default defaultCacheDir()). */
  cacheDir?: string;
}

export type ReferenceKind = 'backing file' | 'data file' | 'extent file';

export class TrustPolicy {
  private constructor(
    readonly untrusted: boolean,
    /** Allowed trees as the user spelled them (made absolute) and as they really are. */
    private readonly roots: string[],
    private readonly why: string,
  ) {}

  /** A policy for an image the user named at `imagePath` (undefined for non-file sources). */
  static forImage(opts: TrustOptions, imagePath?: string, untrustedSource = false): TrustPolicy {
    const allowed = opts.allowBacking ?? [];
    const named = [
      ...(imagePath ? [dirname(resolve(imagePath)), dirname(realOrSelf(imagePath))] : []),
      // The cache is always trusted: disks made by `disk create` are overlays on cached files.
      opts.cacheDir ?? defaultCacheDir(),
      ...allowed,
    ];
    const roots = [...new Set(named.flatMap((d) => [resolve(d), realOrSelf(d)]))];
    const untrusted = opts.untrusted === true || untrustedSource;
    const why = opts.untrusted
      ? 'the image is opened with --untrusted'
      : 'the image comes from an untrusted source';
    return new TrustPolicy(untrusted, roots, why);
  }

  /**
   * Resolves a reference stored in an image at `referrer` (a local path, or undefined) to an
   * absolute host path, or throws an error naming the reference as written and the flag that
   * would allow it. Whether the reference can be allowed at all is decided from its text
   * first, so a refused path is never looked at (its existence is not revealed); only then
   * are symbolic links resolved and the result checked again.
   */
  resolve(ref: string, referrer: string | undefined, kind: ReferenceKind): string {
    const target = this.lexicalTarget(ref, referrer, kind);
    const outside = `${kind} '${ref}' is outside the image's directory, the cache and the --allow-backing directories`;
    if (!this.roots.some((root) => isInside(target, root))) {
      throw new UntrustedReferenceError(
        `${outside}; allow it with --allow-backing ${dirname(target)}`,
      );
    }
    let real: string;
    try {
      real = realpathSync(target);
    } catch (err) {
      throw ioError(err, `${kind} '${ref}' cannot be opened`);
    }
    if (!this.roots.some((root) => isInside(real, root))) {
      throw new UntrustedReferenceError(
        `${outside} once symbolic links are followed; allow the directory the link points to with --allow-backing`,
      );
    }
    let regular: boolean;
    try {
      regular = statSync(real).isFile();
    } catch (err) {
      throw ioError(err, `${kind} '${ref}' cannot be opened`);
    }
    if (!regular) throw new UntrustedReferenceError(`${kind} '${ref}' is not a regular file`);
    return real;
  }

  /** The absolute path a reference names, from its text alone (no file-system call). */
  private lexicalTarget(ref: string, referrer: string | undefined, kind: ReferenceKind): string {
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
    if (referrer === undefined && !isAbsolute(ref)) {
      throw new UntrustedReferenceError(
        `${kind} '${ref}' is relative, but the image is not a local file`,
      );
    }
    return isAbsolute(ref) ? resolve(ref) : resolve(dirname(referrer!), ref);
  }
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
