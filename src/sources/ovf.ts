/**
 * The little of an OVF descriptor that choosing a disk needs: the Disk elements in order and
 * the References/File each one points at. Read with a few regular expressions over the text
 * (no XML dependency); anything it does not understand is ignored.
 */
import { UnsupportedFeatureError } from '../errors.js';

/** File names (hrefs) of the descriptor's disks, in Disk order. */
export function ovfDiskFiles(xml: string): string[] {
  const text = xml.replace(/<!--[\s\S]*?-->/g, '');
  const files = new Map<string, string>();
  for (const attrs of elements(text, 'File')) {
    const id = attrs.get('id');
    const href = attrs.get('href');
    if (id === undefined || href === undefined) continue;
    if (attrs.has('chunkSize'))
      throw new UnsupportedFeatureError(`OVF file '${href}' is split into chunks`);
    files.set(id, href);
  }
  const out: string[] = [];
  for (const attrs of elements(text, 'Disk')) {
    const ref = attrs.get('fileRef');
    const href = ref === undefined ? undefined : files.get(ref);
    if (href !== undefined && !out.includes(href)) out.push(href);
  }
  return out;
}

/** The attributes (by local name) of every start tag with this local name. */
function* elements(text: string, local: string): Generator<Map<string, string>> {
  const tag = new RegExp(`<(?:[\\w.-]+:)?${local}(?=[\\s/>])([^>]*)>`, 'g');
  for (const m of text.matchAll(tag)) {
    const attrs = new Map<string, string>();
    const attr = /(?:[\w.-]+:)?([\w.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
    for (const a of (m[1] ?? '').matchAll(attr))
      attrs.set(a[1]!, decodeEntities(a[2] ?? a[3] ?? ''));
    yield attrs;
  }
}

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e: string) => {
    const k = e.toLowerCase();
    if (k.startsWith('#x')) return safeChar(Number.parseInt(k.slice(2), 16));
    if (k.startsWith('#')) return safeChar(Number.parseInt(k.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[k] ?? '';
  });
}

function safeChar(code: number): string {
  return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
}
