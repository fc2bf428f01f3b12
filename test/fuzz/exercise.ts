/**
 * One fuzz case: open an image and use it the way the commands do (info, extents, read every
 * data extent, map, unaligned sub-ranges), checking the promises DESIGN.md makes for bad
 * input. Returns what happened; `failure` is set when a promise was broken.
 */
import { AssertionError } from 'node:assert';
import { DiskpipeError } from '../../src/errors.js';
import type { Extent, Image } from '../../src/image/types.js';
import { type OpenOptions, openImage } from '../../src/open.js';
import { describeChain, infoJson } from '../../src/ops/info.js';
import { mapEntryJson, mapImage } from '../../src/ops/map.js';
import { checkedExtents } from '../helpers/extents.js';
import type { Rng } from './mutate.js';

export interface Limits {
  /** Data bytes read per case (all data extents up to this many). */
  readBytes: number;
  /** Bytes of zero extents read back to check they really are zero. */
  zeroCheckBytes: number;
}

export type Stage = 'open' | 'info' | 'extents' | 'read' | 'map' | 'sub-range' | 'close';

export interface Outcome {
  opened: boolean;
  /** Where the case ended: the stage that threw, or 'close' when everything ran. */
  stage: Stage;
  /** Error code when the image was refused (or failed later) with a DiskpipeError. */
  code?: string;
  message?: string;
  /** Set when a promise was broken: a non-DiskpipeError, a contract violation, bad output. */
  failure?: string;
  extents?: number;
  bytesRead?: number;
}

const CODES = new Set([
  'USAGE',
  'IO',
  'NOT_FOUND',
  'WRONG_FORMAT',
  'UNSUPPORTED',
  'CORRUPT',
  'NOT_CAPABLE',
  'UNTRUSTED_REFERENCE',
]);
const CHUNK = 1 << 20;

export async function exercise(
  path: string,
  opts: OpenOptions,
  rng: Rng,
  limits: Limits,
): Promise<Outcome> {
  const out: Outcome = { opened: false, stage: 'open' };
  let image: Image | undefined;
  try {
    image = await openImage(path, opts);
    out.opened = true;
    await walk(image, path, rng, limits, out);
    out.stage = 'close';
  } catch (err) {
    classify(err, out);
  }
  if (image) {
    try {
      await image.close();
    } catch (err) {
      if (!out.failure) classify(err, out);
    }
  }
  return out;
}

/** Every error must be a DiskpipeError with a code and one clear line of message. */
function classify(err: unknown, out: Outcome): void {
  if (err instanceof AssertionError) {
    out.failure = `contract broken: ${err.message}`;
    return;
  }
  if (!(err instanceof DiskpipeError)) {
    const e = err as Error;
    const where = e?.stack?.split('\n').slice(1, 4).join(' | ') ?? '';
    out.failure = `not a DiskpipeError: ${e?.name}: ${e?.message ?? String(err)} ${where}`;
    return;
  }
  out.code = err.code;
  out.message = err.message;
  if (!CODES.has(err.code)) out.failure = `unexpected error code ${err.code}: ${err.message}`;
  else if (err.message.trim().length === 0) out.failure = `empty message (code ${err.code})`;
  else if (
    /[\x00-\x1f\x7f-\x9f]|undefined|NaN|\[object /.test(err.message) ||
    err.message.length > 2100
  ) {
    out.failure = `unclear message: ${JSON.stringify(err.message)}`;
  }
}

async function walk(
  image: Image,
  path: string,
  rng: Rng,
  limits: Limits,
  out: Outcome,
): Promise<void> {
  out.stage = 'info';
  assert(Number.isSafeInteger(image.size) && image.size >= 0, `size ${image.size}`);
  // Every layer's details must serialize (no BigInt, no cycles).
  for (const layer of await describeChain(image, path)) JSON.stringify(infoJson(layer));
  out.stage = 'extents';
  const extents = await checkedExtents(image);
  out.extents = extents.length;
  out.stage = 'read';
  out.bytesRead = await readExtents(image, extents, limits);
  out.stage = 'map';
  await checkMap(image, extents);
  out.stage = 'sub-range';
  for (let i = 0; i < 3 && image.size > 0; i++) await subRange(image, extents, rng);
}

function assert(ok: boolean, what: string): asserts ok {
  if (!ok) throw new AssertionError({ message: what });
}

/** Reads data extents (bounded), and checks that a sample of zero extents reads as zeroes. */
async function readExtents(image: Image, extents: Extent[], limits: Limits): Promise<number> {
  const buf = new Uint8Array(CHUNK);
  let data = 0;
  let zero = 0;
  for (const e of extents) {
    if (e.zero && zero >= limits.zeroCheckBytes) continue;
    if (!e.zero && data >= limits.readBytes) continue;
    const n = Math.min(e.length, e.zero ? 64 * 1024 : limits.readBytes - data);
    for (let done = 0; done < n; ) {
      const part = buf.subarray(0, Math.min(CHUNK, n - done));
      await image.read(part, e.offset + done);
      if (e.zero) {
        const bad = part.findIndex((b) => b !== 0);
        assert(
          bad < 0,
          `extent ${e.offset}+${e.length} is zero but byte ${e.offset + done + bad} is not`,
        );
      }
      done += part.length;
    }
    if (e.zero) zero += n;
    else data += n;
  }
  return data;
}

/** map covers the image in order and agrees with extents on what reads as zero. */
async function checkMap(image: Image, extents: Extent[]): Promise<void> {
  let next = 0;
  let i = 0;
  for await (const m of mapImage(image)) {
    assert(m.offset === next && m.length > 0, `map entry at ${m.offset}, expected ${next}`);
    JSON.stringify(mapEntryJson(m));
    assert(Number.isSafeInteger(m.depth) && m.depth >= 0, `map depth ${m.depth}`);
    // Walk the extents alongside: each byte's zero flag must be the same in both views.
    const end = m.offset + m.length;
    while (i < extents.length && extents[i]!.offset < end) {
      const e = extents[i]!;
      assert(
        e.zero === m.zero || e.offset + e.length <= m.offset,
        `map says zero=${m.zero} at ${m.offset}+${m.length}, extents say zero=${e.zero} at ${e.offset}+${e.length}`,
      );
      if (e.offset + e.length > end) break;
      i++;
    }
    next = end;
  }
  assert(next === image.size, `map ends at ${next}, image size ${image.size}`);
}

/**
 * An unaligned range: its extents must classify bytes as the whole-image walk did, and an
 * unaligned read must return the same bytes as aligned reads of the same place.
 */
async function subRange(image: Image, whole: Extent[], rng: Rng): Promise<void> {
  const offset = rng.int(image.size);
  const length = 1 + rng.int(Math.min(image.size - offset, 256 * 1024));
  for (const e of await checkedExtents(image, offset, length)) {
    const w = whole.find((x) => x.offset <= e.offset && e.offset < x.offset + x.length)!;
    assert(w.zero === e.zero, `extents(${offset}, ${length}) zero=${e.zero} at ${e.offset}`);
  }
  const small = new Uint8Array(length);
  await image.read(small, offset);
  const from = offset - (offset % 65536);
  const to = Math.min(image.size, Math.ceil((offset + length) / 65536) * 65536);
  const aligned = new Uint8Array(to - from);
  for (let at = from; at < to; at += 65536) {
    await image.read(aligned.subarray(at - from, Math.min(at - from + 65536, to - from)), at);
  }
  const bad = small.findIndex((b, k) => b !== aligned[offset - from + k]);
  assert(bad < 0, `read(${offset}, ${length}) differs from aligned reads at ${offset + bad}`);
}
