/**
 * Credentials in URLs (`https://user:secret@host/…`): never shown in a message or stored in a
 * record, and sent only to the origin they were given for (as curl and fetch do).
 */

/** The URL without user name and password (unparseable text: its userinfo cut by pattern). */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i, '$1');
  }
}

/** A URL for messages: without its credentials. */
export function displayUrl(url: URL | string): string {
  return withoutCredentials(typeof url === 'string' ? url : url.href);
}

/** An Authorization header for the URL's user name and password, if it has any. */
export function basicAuthorization(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (!u.username && !u.password) return undefined;
  const pair = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
  return `Basic ${Buffer.from(pair).toString('base64')}`;
}

/** Whether credentials given for `from` may still be sent to `to` (same scheme, host, port). */
export function mayKeepCredentials(from: URL, to: URL): boolean {
  return from.origin === to.origin;
}
