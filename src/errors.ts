/**
 * diskpipe's error tree. Every failure the library reports is a DiskpipeError with a stable
 * `code`; the CLI turns it into one line on stderr and exit status 2.
 */

const BRAND = Symbol.for('diskpipe.error');

export type ErrorCode =
  | 'USAGE'
  | 'IO'
  | 'NOT_FOUND'
  | 'WRONG_FORMAT'
  | 'UNSUPPORTED'
  | 'CORRUPT'
  | 'OUT_OF_RANGE'
  | 'NOT_CAPABLE'
  | 'UNTRUSTED_REFERENCE'
  | 'CHECKSUM_MISMATCH'
  | 'NBD_PROTOCOL'
  | 'HTTP'
  | 'CACHE'
  | 'ABORTED';

export class DiskpipeError extends Error {
  readonly code: ErrorCode;

  /** Subclasses only: each code has its class (UsageError, CorruptImageError...). */
  protected constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(printable(message), options);
    this.code = code;
    this.name = new.target.name;
    Object.defineProperty(this, BRAND, { value: true });
  }

  // instanceof keeps working across two copies of the package in one process.
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== DiskpipeError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && BRAND in value;
  }
}

/** Longest message kept whole; longer ones keep their start and end. */
const MAX_MESSAGE = 2000;

/**
 * Messages quote names and text read from images (backing files, descriptor lines); their
 * control characters are escaped so a message stays one line and cannot drive a terminal, and
 * a quote of megabytes is cut in the middle.
 */
function printable(message: string): string {
  const escaped = message.replace(
    /[\x00-\x1f\x7f-\x9f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  if (escaped.length <= MAX_MESSAGE) return escaped;
  const cut = escaped.length - 1500;
  return `${escaped.slice(0, 1000)}...(${cut} characters)...${escaped.slice(-500)}`;
}

/** What every error constructor accepts besides its message. */
export interface DiskpipeErrorOptions {
  /** The error this one explains (kept as `cause`). */
  cause?: unknown;
}

/** A caller's mistake: a bad option, argument or combination. */
export class UsageError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('USAGE', message, options);
  }
}

/** A system call failed (EIO, ENOSPC, EACCES...) or a file changed under us. */
export class IoError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('IO', message, options);
  }
}

/** A file, cache entry or export that does not exist. */
export class NotFoundError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('NOT_FOUND', message, options);
  }
}

/** The bytes are not this format (used by probes; never reaches a user for a named format). */
export class WrongFormatError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('WRONG_FORMAT', message, options);
  }
}

/** A real image using something diskpipe does not read (encryption, an unknown feature...). */
export class UnsupportedFeatureError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('UNSUPPORTED', message, options);
  }
}

/** Metadata that cannot be right: offsets past the end, absurd sizes, loops. */
export class CorruptImageError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('CORRUPT', message, options);
  }
}

/** A range or size beyond what an image, device or limit allows. */
export class OutOfRangeError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('OUT_OF_RANGE', message, options);
  }
}

/** The image or target cannot do this (write to a read-only image, reflink here...). */
export class NotCapableError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('NOT_CAPABLE', message, options);
  }
}

/** An image refers to another file that the trust rule does not allow. */
export class UntrustedReferenceError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('UNTRUSTED_REFERENCE', message, options);
  }
}

/** A digest (download, content, cache entry) is not the one expected. */
export class ChecksumMismatchError extends DiskpipeError {
  constructor(
    message: string,
    readonly expected: string,
    readonly actual: string,
    options?: DiskpipeErrorOptions,
  ) {
    super('CHECKSUM_MISMATCH', message, options);
  }
}

export class NbdProtocolError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('NBD_PROTOCOL', message, options);
  }
}

/** An HTTP failure; `transient` ones are retried. */
export class HttpError extends DiskpipeError {
  constructor(
    message: string,
    readonly transient: boolean,
    readonly status?: number,
    options?: DiskpipeErrorOptions,
  ) {
    super('HTTP', message, options);
  }
}

export class CacheError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('CACHE', message, options);
  }
}

/** The caller's AbortSignal fired. */
export class AbortError extends DiskpipeError {
  constructor(message: string, options?: DiskpipeErrorOptions) {
    super('ABORTED', message, options);
  }
}

/**
 * The same error with `prefix: ` before its message: same class, code and fields (an
 * `instanceof CorruptImageError` still holds), the original kept as `cause`. Errors that are
 * not DiskpipeErrors become one through ioError.
 */
export function withContext(err: unknown, prefix: string): DiskpipeError {
  if (!(err instanceof DiskpipeError)) return ioError(err, prefix);
  return withMessage(err, `${prefix}: ${err.message}`);
}

/** The same error (class, code, fields) with another message; the original is the cause. */
export function withMessage(err: DiskpipeError, message: string): DiskpipeError {
  const copy = Object.create(Object.getPrototypeOf(err)) as DiskpipeError;
  Object.assign(copy, err); // code, name and the subclass's own fields
  Object.defineProperty(copy, BRAND, { value: true });
  const hidden = { writable: true, configurable: true, enumerable: false };
  Object.defineProperty(copy, 'message', { ...hidden, value: printable(message) });
  Object.defineProperty(copy, 'cause', { ...hidden, value: err });
  Error.captureStackTrace(copy, withMessage);
  return copy;
}

/** Wraps a Node system error (ENOENT, EACCES, ENOSPC...) with the path it concerns. */
export function ioError(err: unknown, what: string): DiskpipeError {
  if (err instanceof DiskpipeError) return err;
  const e = err as NodeJS.ErrnoException;
  const reason = e?.code ? `${e.code}: ${describeErrno(e.code)}` : String(e?.message ?? err);
  const message = `${what}: ${reason}`;
  if (e?.code === 'ENOENT') return new NotFoundError(message, { cause: err });
  return new IoError(message, { cause: err });
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  EEXIST: 'file exists',
  EIO: 'input/output error',
  EROFS: 'read-only file system',
  EBUSY: 'device or resource busy',
  EFBIG: 'file too large',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
  EXDEV: 'cross-device link',
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  ETIMEDOUT: 'timed out',
};

function describeErrno(code: string): string {
  return ERRNO_TEXT[code] ?? 'system error';
}
