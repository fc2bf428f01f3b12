/**
 * What identifies one version of an HTTP resource: ETag, Last-Modified and its total length.
 * Range reads compare every answer with the first one; downloads keep them beside a partial
 * file (If-Range on resume) and in the cache record (conditional revalidation).
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface Validators {
  etag?: string | undefined;
  lastModified?: string | undefined;
  /** Total bytes of the resource (Content-Range total, or Content-Length of a whole answer). */
  size?: number | undefined;
}

/** The validators an answer carries (`size` only when the headers tell the whole length). */
export function validatorsOf(headers: IncomingHttpHeaders, status: number): Validators {
  const v: Validators = {};
  if (headers.etag) v.etag = headers.etag;
  if (headers['last-modified']) v.lastModified = headers['last-modified'];
  const size = status === 206 ? rangeTotal(headers) : wholeLength(headers, status);
  if (size !== undefined) v.size = size;
  return v;
}

/** An ETag that promises byte equality (a weak `W/` one only promises equivalent content). */
export function strongEtag(v: Validators): string | undefined {
  return v.etag && !v.etag.startsWith('W/') ? v.etag : undefined;
}

/** Whether answers can be proved to come from one version of the resource. */
export function canVerify(v: Validators): boolean {
  return strongEtag(v) !== undefined || v.lastModified !== undefined;
}

/** The value for If-Range: a strong ETag, else Last-Modified (RFC 9110 §13.1.5). */
export function ifRangeValue(v: Validators): string | undefined {
  return strongEtag(v) ?? v.lastModified;
}

/** If-None-Match / If-Modified-Since for revalidating a cached copy. */
export function conditionalHeaders(v: Validators | undefined): Record<string, string> {
  if (v?.etag) return { 'if-none-match': v.etag };
  if (v?.lastModified) return { 'if-modified-since': v.lastModified };
  return {};
}

/** Why `now` is not the version `first` described, or undefined when nothing shows a change. */
export function changeBetween(first: Validators, now: Validators): string | undefined {
  if (first.size !== undefined && now.size !== undefined && first.size !== now.size)
    return `the resource changed size on the server (${first.size} → ${now.size} bytes)`;
  const a = strongEtag(first);
  const b = strongEtag(now);
  if (
    (a && b && a !== b) ||
    (first.lastModified && now.lastModified && first.lastModified !== now.lastModified)
  )
    return 'the resource changed on the server while it was read';
  return undefined;
}

/** ETag and Last-Modified only: what a cache record or a partial file keeps. */
export function storedValidators(v: Validators): Validators {
  const out: Validators = {};
  if (v.etag) out.etag = v.etag;
  if (v.lastModified) out.lastModified = v.lastModified;
  return out;
}

export interface ContentRange {
  start: number;
  /** Exclusive. */
  end: number;
  /** Undefined for `*` (a length the server does not know). */
  total: number | undefined;
}

/** Parses `Content-Range: bytes A-B/T` (T may be `*`); undefined when malformed. */
export function parseContentRange(headers: IncomingHttpHeaders): ContentRange | undefined {
  const text = String(headers['content-range'] ?? '').trim();
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(text);
  if (!m) return undefined;
  const r = {
    start: Number(m[1]),
    end: Number(m[2]) + 1,
    total: m[3] === '*' ? undefined : Number(m[3]),
  };
  if (!Number.isSafeInteger(r.end) || r.start >= r.end) return undefined;
  if (r.total !== undefined && (!Number.isSafeInteger(r.total) || r.end > r.total))
    return undefined;
  return r;
}

/** The Content-Length header as a number, if present and sane. */
export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const text = headers['content-length'];
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

function rangeTotal(headers: IncomingHttpHeaders): number | undefined {
  const r = parseContentRange(headers);
  if (r) return r.total;
  // A 416 tells the total as `bytes */T`.
  const m = /^bytes \*\/(\d+)$/.exec(String(headers['content-range'] ?? '').trim());
  return m ? Number(m[1]) : undefined;
}

function wholeLength(headers: IncomingHttpHeaders, status: number): number | undefined {
  if (status === 416) return rangeTotal(headers);
  return status === 200 ? contentLength(headers) : undefined;
}
