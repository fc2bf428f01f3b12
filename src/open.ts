import { fstatSync } from 'node:fs';
import { CorruptImageError, UntrustedReferenceError, UsageError } from './errors.js';
import {
  type FormatDriver,
  formatDriver,
  formatNames,
  type OpenContext,
  probeSourceFormat,
} from './formats/registry.js';
import './formats/index.js';
import { RefusedBacking } from './image/refused-backing.js';
import { RefusedFile } from './image/refused-file.js';
import type { ReferenceKind, TrustOptions } from './image/trust.js';
import { TrustPolicy } from './image/trust.js';
import type { ByteSource, Image } from './image/types.js';
import { abortError, asAbortError, throwIfAborted } from './io/abort.js';
import { LocalFile } from './io/file.js';
import { refuseWritten } from './io/qemu-locks.js';
import type { HttpOptions } from './sources/http.js';
import { type OpenedSource, openSource } from './sources/index.js';
import { openMemberOf, type UnwrapOptions, unwrapToSource } from './sources/unwrap.js';

export interface OpenOptions extends TrustOptions, UnwrapOptions {
  /** Force a format (-f); probing and unwrapping (tar members, decompression) are off then. */
  format?: string;
  writable?: boolean;
  /** Settings for http(s):// sources. */
  http?: HttpOptions;
  /**
   * Refuse a local image that another program writes (a VM, qemu-nbd: qemu's write lock is
   * held), as qemu-img does without -U. Default false; the CLI's reading commands set it unless
   * -U/--force-share is given.
   */
  refuseWritten?: boolean;
  /**
   * Open only to describe the image (`info`): a backing file the trust rule refuses becomes a
   * RefusedBacking, a data file or vmdk extent a RefusedFile, each naming the refusal, instead
   * of failing the open.
   */
  describeOnly?: boolean;
}

/** Longest backing chain diskpipe follows (qemu has no fixed limit; hostile chains need one). */
export const MAX_CHAIN_DEPTH = 64;

/**
 * Opens an IMAGE argument: a path or URL, probed (or forced) to its format. `opts.signal`
 * cancels the open (and, for an HTTP source, the image's later reads) with an AbortError.
 */
export async function openImage(spec: string, opts: OpenOptions = {}): Promise<Image> {
  const signal = opts.signal;
  if (!signal) return openPlain(spec, opts);
  const what = `opening ${spec}`;
  throwIfAborted(signal, what);
  try {
    const image = await openPlain(spec, { ...opts, http: { ...opts.http, signal } });
    if (signal.aborted) {
      await image.close(); // an open that could not be interrupted (an NBD handshake)
      throw abortError(signal, what);
    }
    return image;
  } catch (err) {
    throw asAbortError(err, signal, what);
  }
}

async function openPlain(spec: string, opts: OpenOptions): Promise<Image> {
  const { source, untrusted } = await openUnwrapped(spec, opts);
  return openOnSource(source, untrusted, opts);
}

/**
 * Opens an IMAGE argument as random-access bytes: tar/OVA members and compressed files are
 * unwrapped (compressed ones staged) unless a format is forced or the image is writable.
 */
export async function openUnwrapped(spec: string, opts: OpenOptions = {}): Promise<OpenedSource> {
  const writable = opts.writable ?? false;
  if (opts.format === undefined && !writable) return unwrapToSource(spec, opts);
  const opened = await openSource(spec, {
    writable,
    http: opts.http,
    ...(opts.refuseWritten && { refuseWritten: true }),
    ...(opts.signal && { signal: opts.signal }),
  });
  // -f turns probing and unwrapping off; an explicit --member still picks a tar member.
  if (opts.member === undefined || writable) return opened;
  return { source: await openMemberOf(opened.source, opts.member), untrusted: true };
}

/** Opens the image on an opened (unwrapped) source; closes the source if that fails. */
export async function openOnSource(
  source: ByteSource,
  untrustedSource: boolean,
  opts: OpenOptions = {},
): Promise<Image> {
  const trust = TrustPolicy.forImage(opts, source.path, untrustedSource);
  try {
    return await openOn(
      source,
      opts.format,
      trust,
      0,
      new Set(),
      opts.writable ?? false,
      opts.describeOnly ?? false,
      opts.refuseWritten ?? false,
    );
  } catch (err) {
    await source.close().catch(() => {});
    throw err;
  }
}

/** Opens an image on an already opened byte source (library use: tar members, NBD...). */
export async function openImageOn(
  source: ByteSource,
  opts: OpenOptions & { untrusted?: boolean } = {},
): Promise<Image> {
  const trust = TrustPolicy.forImage(opts, source.path, opts.untrusted ?? false);
  return openOn(
    source,
    opts.format,
    trust,
    0,
    new Set(),
    opts.writable ?? false,
    false,
    opts.refuseWritten ?? false,
  );
}

export function driverFor(format: string): FormatDriver {
  const d = formatDriver(format);
  if (!d) throw new UsageError(`unknown format '${format}' (known: ${formatNames().join(', ')})`);
  return d;
}

export async function probeSource(source: ByteSource): Promise<FormatDriver> {
  return probeSourceFormat(source);
}

async function openOn(
  source: ByteSource,
  format: string | undefined,
  trust: TrustPolicy,
  depth: number,
  chain: Set<string>,
  writable: boolean,
  describeOnly = false,
  refuseWrittenFiles = false,
): Promise<Image> {
  if (depth > MAX_CHAIN_DEPTH) {
    throw new CorruptImageError(`backing chain is longer than ${MAX_CHAIN_DEPTH} images`);
  }
  const key = chainKey(source);
  if (key !== undefined) {
    if (chain.has(key)) throw new CorruptImageError(`backing chain loops back to ${source.path}`);
    chain = new Set(chain).add(key);
  }
  const driver = format ? driverFor(format) : await probeSource(source);
  /** The path the trust rule allows for `ref`; opening only to describe, a refusal's reason. */
  const resolve = (ref: string, referrer: ByteSource, kind: ReferenceKind) => {
    try {
      return trust.resolve(ref, referrer.path, kind);
    } catch (err) {
      if (describeOnly && err instanceof UntrustedReferenceError) return { refused: err.message };
      throw err;
    }
  };
  const ctx: OpenContext = {
    trust,
    depth,
    writable,
    async openBacking(ref, referrer, backingFormat) {
      const path = resolve(ref, referrer, 'backing file');
      if (typeof path !== 'string') return new RefusedBacking(ref, path.refused);
      const file = await LocalFile.open(path, 'r');
      try {
        if (chain.has(chainKey(file)!)) {
          throw new CorruptImageError(`backing chain loops back to ${path}`);
        }
        // A VM writing the backing file changes what the overlay reads as much as the top's.
        if (refuseWrittenFiles && !describeOnly) refuseWritten(file.fd, path);
        return await openOn(
          file,
          backingFormat,
          trust,
          depth + 1,
          chain,
          false,
          describeOnly,
          refuseWrittenFiles,
        );
      } catch (err) {
        await file.close().catch(() => {});
        throw err;
      }
    },
    async openReferencedFile(ref, referrer, kind, wantWrite) {
      const path = resolve(ref, referrer, kind);
      if (typeof path !== 'string') return new RefusedFile(ref, path.refused);
      const file = await LocalFile.open(path, wantWrite ? 'r+' : 'r');
      if (!wantWrite && refuseWrittenFiles && !describeOnly) {
        try {
          refuseWritten(file.fd, path); // a vmdk extent a VM writes
        } catch (err) {
          await file.close().catch(() => {});
          throw err;
        }
      }
      return file;
    },
  };
  return driver.open(source, ctx);
}

/**
 * What identifies a file in a backing chain: device and inode, so another name for a file
 * already in it (a hard link, a name the trust rule resolved differently) is the loop it is,
 * found before the file's qemu lock is checked: the edit lock this process holds on IMAGE
 * would otherwise be reported as another program's.
 */
function chainKey(source: ByteSource): string | undefined {
  if (source instanceof LocalFile) {
    const st = fstatSync(source.fd);
    return `${st.dev}:${st.ino}`;
  }
  return source.path;
}
