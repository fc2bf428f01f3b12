/**
 * Differencing VHD parent locators: where the parent file is, as each platform wrote it.
 * Only references a POSIX host can follow are used: a relative Windows path ("W2ru"), a
 * file:// URL ("MacX"), or an absolute path that is already POSIX-shaped.
 */
import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { readExact } from './bytes.js';
import { decodeUtf16, type ParentLocator } from './footer.js';

const MAX_LOCATOR_BYTES = 64 * 1024;

/** Candidate parent paths, best first. */
export async function parentPaths(
  source: ByteSource,
  locators: ParentLocator[],
  label: string,
): Promise<string[]> {
  const out: string[] = [];
  const order = ['W2ru', 'MacX', 'W2ku'];
  const usable = locators
    .filter((l) => order.includes(l.platform))
    .sort((a, b) => order.indexOf(a.platform) - order.indexOf(b.platform));
  for (const loc of usable) {
    if (loc.length === 0) continue;
    if (loc.length > MAX_LOCATOR_BYTES) {
      throw new CorruptImageError(`${label}: parent locator is ${loc.length} bytes long`);
    }
    const raw = await readExact(source, loc.offset, loc.length, 'parent locator');
    const path = loc.platform === 'MacX' ? fromFileUrl(raw) : fromWindowsPath(raw);
    if (path !== undefined && !out.includes(path)) out.push(path);
  }
  return out;
}

function fromWindowsPath(raw: Uint8Array): string | undefined {
  const text = decodeUtf16(raw, true);
  if (/^[a-z]:/i.test(text) || text.startsWith('\\\\')) return undefined; // drive or UNC path
  const path = text.replaceAll('\\', '/');
  return path.length > 0 ? path : undefined;
}

function fromFileUrl(raw: Uint8Array): string | undefined {
  const text = new TextDecoder().decode(raw).replace(/\0+$/, '');
  const m = /^file:\/\/(localhost)?(\/.*)$/.exec(text);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[2]!);
  } catch {
    return undefined;
  }
}

export function noUsableLocator(label: string, parentName: string): UnsupportedFeatureError {
  return new UnsupportedFeatureError(
    `${label}: differencing VHD whose parent '${parentName}' has no parent locator usable on this host (only relative paths and file:// URLs are followed)`,
  );
}
