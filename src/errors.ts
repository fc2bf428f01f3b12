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

/** The class of one code's errors: `new CorruptImageError(message, { cause })`. */
export interface CodedErrorClass<C extends ErrorCode> {
  new (message: string, options?: DiskpipeErrorOptions): DiskpipeError & { readonly code: C };
}

/** Makes the subclass for `code`; `name` is what `err.name` and stack traces show. */
function codeError<C extends ErrorCode>(code: C, name: string): CodedErrorClass<C> {
  const coded = class extends DiskpipeError {
    declare readonly code: C;
    constructor(message: string, options?: DiskpipeErrorOptions) {
      super(code, message, options);
    }
  };
  Object.defineProperty(coded, 'name', { value: name });
  return coded;
}

/** A caller's mistake: a bad option, argument or combination. */
export const UsageError = codeError('USAGE', 'UsageError');
export type UsageError = InstanceType<typeof UsageError>;

/** A system call failed (EIO, ENOSPC, EACCES...) or a file changed under us. */
export const IoError = codeError('IO', 'IoError');
export type IoError = InstanceType<typeof IoError>;

/** A file, cache entry or export that does not exist. */
export const NotFoundError = codeError('NOT_FOUND', 'NotFoundError');
export type NotFoundError = InstanceType<typeof NotFoundError>;

/** The bytes are not this format (used by probes; never reaches a user for a named format). */
export const WrongFormatError = codeError('WRONG_FORMAT', 'WrongFormatError');
export type WrongFormatError = InstanceType<typeof WrongFormatError>;

/** A real image using something diskpipe does not read (encryption, an unknown feature...). */
export const UnsupportedFeatureError = codeError('UNSUPPORTED', 'UnsupportedFeatureError');
export type UnsupportedFeatureError = InstanceType<typeof UnsupportedFeatureError>;

/** Metadata that cannot be right: offsets past the end, absurd sizes, loops. */
export const CorruptImageError = codeError('CORRUPT', 'CorruptImageError');
export type CorruptImageError = InstanceType<typeof CorruptImageError>;

/** A range or size beyond what an image, device or limit allows. */
export const OutOfRangeError = codeError('OUT_OF_RANGE', 'OutOfRangeError');
export type OutOfRangeError = InstanceType<typeof OutOfRangeError>;

/** The image or target cannot do this (write to a read-only image, reflink here...). */
export const NotCapableError = codeError('NOT_CAPABLE', 'NotCapableError');
export type NotCapableError = InstanceType<typeof NotCapableError>;

/** An image refers to another file that the trust rule does not allow. */
export const UntrustedReferenceError = codeError('UNTRUSTED_REFERENCE', 'UntrustedReferenceError');
export type UntrustedReferenceError = InstanceType<typeof UntrustedReferenceError>;

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

/** The NBD peer broke the protocol (a bad reply, magic or length). */
export const NbdProtocolError = codeError('NBD_PROTOCOL', 'NbdProtocolError');
export type NbdProtocolError = InstanceType<typeof NbdProtocolError>;

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

/** A cache entry cannot be used as asked (not cached, ambiguous, in use, removed meanwhile). */
export const CacheError = codeError('CACHE', 'CacheError');
export type CacheError = InstanceType<typeof CacheError>;

/** The caller's AbortSignal fired. */
export const AbortError = codeError('ABORTED', 'AbortError');
export type AbortError = InstanceType<typeof AbortError>;

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

const HINT = Symbol.for('diskpipe.optionHint');

/** Advice that names a command-line option, kept beside a message rather than in it. */
export interface OptionHint {
  /** The option's long name, as in the command's option table ('force-share', 'member'). */
  option: string;
  /** Appended to the message as it is (with its own leading punctuation). */
  advice: string;
}

/**
 * Marks `err` with advice naming an option. The library cannot know which command (if any)
 * runs it, so the CLI appends the advice only for commands that take the option: `commit`
 * was told to use -U and `pull` to use --member, which neither takes.
 */
export function withOptionHint<E extends DiskpipeError>(err: E, hint: OptionHint): E {
  // An own enumerable field: withContext/withMessage copies keep it.
  Object.assign(err, { [HINT]: hint });
  return err;
}

/** The hint withOptionHint attached, if any. */
export function optionHintOf(err: unknown): OptionHint | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  return (err as Record<symbol, OptionHint | undefined>)[HINT];
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

/** `value` if it is one of `allowed`, else a UsageError naming `what` and the choices. */
export function oneOf<T extends string>(what: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${what} '${value}' is not one of ${allowed.join(', ')}`);
}
