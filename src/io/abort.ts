/**
 * Cancellation: every long operation takes an AbortSignal and checks it between work units.
 * An abort always surfaces as an AbortError (code ABORTED), whatever was interrupted.
 */
import { AbortError } from '../errors.js';

/** Throws an AbortError naming `what` once `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/** The AbortError for `what`, keeping the signal's reason as its cause. */
export function abortError(signal: AbortSignal | undefined, what: string): AbortError {
  return new AbortError(`${what} was aborted`, { cause: signal?.reason });
}

/**
 * `err` as an AbortError when it happened because `signal` fired (a fetch, a stream or a
 * child process rejects with its own error type); otherwise `err` unchanged.
 */
export function asAbortError(err: unknown, signal: AbortSignal | undefined, what: string): unknown {
  if (err instanceof AbortError) return err;
  return signal?.aborted ? abortError(signal, what) : err;
}
