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

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
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

export class UsageError extends DiskpipeError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** The bytes are not this format (used by probes; never reaches a user for a named format). */
export class WrongFormatError extends DiskpipeError {
  constructor(message: string) {
    super('WRONG_FORMAT', message);
  }
}

/** A real image using something diskpipe does not read (encryption, an unknown feature...). */
export class UnsupportedFeatureError extends DiskpipeError {
  constructor(message: string) {
    super('UNSUPPORTED', message);
  }
}

/** Metadata that cannot be right: offsets past the end, absurd sizes, loops. */
export class CorruptImageError extends DiskpipeError {
  constructor(message: string) {
    super('CORRUPT', message);
  }
}

export class OutOfRangeError extends DiskpipeError {
  constructor(message: string) {
    super('OUT_OF_RANGE', message);
  }
}

export class NotCapableError extends DiskpipeError {
  constructor(message: string) {
    super('NOT_CAPABLE', message);
  }
}

/** An image refers to another file that the trust rule does not allow. */
export class UntrustedReferenceError extends DiskpipeError {
  constructor(message: string) {
    super('UNTRUSTED_REFERENCE', message);
  }
}

export class ChecksumMismatchError extends DiskpipeError {
  constructor(
    message: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super('CHECKSUM_MISMATCH', message);
  }
}

export class NbdProtocolError extends DiskpipeError {
  constructor(message: string) {
    super('NBD_PROTOCOL', message);
  }
}

export class CacheError extends DiskpipeError {
  constructor(message: string) {
    super('CACHE', message);
  }
}

/** Wraps a Node system error (ENOENT, EACCES, ENOSPC...) with the path it concerns. */
export function ioError(err: unknown, what: string): DiskpipeError {
  if (err instanceof DiskpipeError) return err;
  const e = err as NodeJS.ErrnoException;
  const reason = e?.code ? `${e.code}: ${describeErrno(e.code)}` : String(e?.message ?? err);
  const code = e?.code === 'ENOENT' ? 'NOT_FOUND' : 'IO';
  return new DiskpipeError(code, `${what}: ${reason}`, { cause: err });
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
