/**
 * HTTP failures as HttpErrors: which are transient (retried) and how they read. Messages name
 * the URL without its credentials.
 */
import http from 'node:http';
import { DiskpipeError, HttpError } from '../errors.js';

/** Network and TLS failures of a request; certificate problems are final, not retried. */
export function networkError(err: unknown, label: string): DiskpipeError {
  if (err instanceof DiskpipeError) return err;
  const e = err as NodeJS.ErrnoException;
  const permanent = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ERR_INVALID_URL', 'CERT_HAS_EXPIRED']);
  // https:// to a plain HTTP server: OpenSSL's multi-line "wrong version number", never transient.
  if (e?.code === 'EPROTO' && /wrong version number/.test(e.message ?? '')) {
    const msg = `${label}: TLS handshake failed: the server does not speak TLS (an http:// URL?)`;
    return new HttpError(msg, false, undefined, { cause: err });
  }
  const tls = typeof e?.code === 'string' && /CERT|SSL|TLS|SIGNATURE/.test(e.code);
  const what = e?.code ? `${e.code}${e.message ? ` (${e.message})` : ''}` : String(e?.message ?? e);
  const hint = !tls
    ? ''
    : e?.code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? '; the certificate is for another host name (--insecure accepts it anyway)'
      : '; trust a private CA with --ca-cert FILE, or accept any with --insecure';
  return new HttpError(
    `${label}: ${what}${hint}`,
    !permanent.has(e?.code ?? '') && !tls,
    undefined,
    {
      cause: err,
    },
  );
}

/** A status that is not the expected one; 5xx, 429 and 408 are transient. */
export function statusError(status: number, label: string): HttpError {
  const text = http.STATUS_CODES[status] ?? 'unexpected status';
  const transient = status >= 500 || status === 429 || status === 408;
  return new HttpError(`${label}: HTTP ${status} ${text}`, transient, status);
}

/** The error reported when retries end: a transient one says how often it was retried. */
export function finalError(e: DiskpipeError, retries: number): DiskpipeError {
  if (!(e instanceof HttpError) || !e.transient || retries === 0) return e;
  return new HttpError(`${e.message} (after ${retries} retries)`, false, e.status, { cause: e });
}
