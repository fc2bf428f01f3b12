/**
 * A batch: compressed clusters that sit in one span of host bytes, each to be decoded into
 * its own place in one destination buffer. The layout is a flat Int32Array so it crosses to a
 * worker thread as one small transfer: per item [at, size, to, length, flavour].
 */
import { type DeflateFlavour, inflateInto, isZlibWrapped } from './inflate-into.js';

export const Flavour = {
  /** Raw deflate (qcow2 compression_type 0). */
  Deflate: 0,
  /** zlib-wrapped deflate, or raw deflate when there is no zlib header (VMDK grains). */
  ZlibOrDeflate: 1,
  /** zstd frame (qcow2 compression_type 1). */
  Zstd: 2,
} as const;
export type Flavour = (typeof Flavour)[keyof typeof Flavour];

export interface BatchItem {
  /** Compressed bytes: span[at, at+size). */
  at: number;
  size: number;
  /** Output: dst[to, to+length); the item must decode to exactly `length` bytes. */
  to: number;
  length: number;
  flavour: Flavour;
}

/** Why an item failed: `written` is set when the data was good but the size was wrong. */
export interface BatchFailure {
  index: number;
  message: string;
  written?: number;
}

export const FIELDS = 5;

export function encodeItems(items: readonly BatchItem[]): Int32Array {
  const out = new Int32Array(items.length * FIELDS);
  items.forEach((it, i) => {
    out.set([it.at, it.size, it.to, it.length, it.flavour], i * FIELDS);
  });
  return out;
}

function flavourOf(code: number, data: Uint8Array): DeflateFlavour {
  if (code === Flavour.ZlibOrDeflate && isZlibWrapped(data)) return 'zlib';
  return 'deflate';
}

/**
 * Decodes every deflate item of an encoded batch synchronously (zstd items are left to the
 * caller). Stops at the first failure and reports it.
 */
export function decodeDeflateBatch(
  span: Uint8Array,
  items: Int32Array,
  dst: Uint8Array,
): BatchFailure | undefined {
  for (let i = 0; i * FIELDS < items.length; i++) {
    const k = i * FIELDS;
    const [at, size, to, length, code] = [
      items[k]!,
      items[k + 1]!,
      items[k + 2]!,
      items[k + 3]!,
      items[k + 4]!,
    ];
    if (code === Flavour.Zstd) continue;
    const src = span.subarray(at, at + size);
    let written: number;
    try {
      written = inflateInto(flavourOf(code, src), src, dst.subarray(to, to + length));
    } catch (err) {
      return { index: i, message: (err as Error).message };
    }
    if (written !== length) {
      return { index: i, message: `decompresses to ${written} bytes`, written };
    }
  }
  return undefined;
}
