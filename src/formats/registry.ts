import type { TrustPolicy } from '../image/trust.js';
import type { ByteSource, Image } from '../image/types.js';

/** What a format needs from the opener to follow references safely. */
export interface OpenContext {
  readonly trust: TrustPolicy;
  /** How many images above this one in a backing chain (0 for the image the user named). */
  readonly depth: number;
  /** Opens another image this one references (a backing file), through the trust rule. */
  openBacking(ref: string, referrer: ByteSource, format: string | undefined): Promise<Image>;
  /** Opens a plain file this one references (data file, extent), through the trust rule. */
  openReferencedFile(
    ref: string,
    referrer: ByteSource,
    kind: 'data file' | 'extent file',
    writable?: boolean,
  ): Promise<ByteSource>;
  /** Open the image for writing (create/convert targets, serve --writable). */
  readonly writable: boolean;
}

export interface FormatDriver {
  readonly name: string;
  /** Recognises the format from its first bytes (up to PROBE_BYTES) and the source size. */
  probe(head: Uint8Array, size: number): boolean;
  /**
   * Recognises a format whose magic is a trailer (the last TAIL_PROBE_BYTES bytes), asked only
   * when no format recognised the head. `name` is the source's name (a path or URL).
   */
  probeTail?(tail: Uint8Array, size: number, name: string): boolean;
  open(source: ByteSource, ctx: OpenContext): Promise<Image>;
}

/** What probing needs of a driver: kept apart from its reader, so probing loads no reader. */
export type FormatProbe = Pick<FormatDriver, 'name' | 'probe' | 'probeTail'>;

/** A driver whose reader module is loaded on its first open. */
export function lazyDriver(p: FormatProbe, load: () => Promise<FormatDriver>): FormatDriver {
  return { ...p, open: async (source, ctx) => (await load()).open(source, ctx) };
}

export const PROBE_BYTES = 4096;
export const TAIL_PROBE_BYTES = 512;

const drivers: FormatDriver[] = [];

/** Adds a format; formats are probed in registration order and raw must come last. */
export function registerFormat(driver: FormatDriver): void {
  const raw = drivers.findIndex((d) => d.name === 'raw');
  if (raw >= 0 && driver.name !== 'raw') drivers.splice(raw, 0, driver);
  else drivers.push(driver);
}

export function formatDriver(name: string): FormatDriver | undefined {
  return drivers.find((d) => d.name === name);
}

export function formatNames(): string[] {
  return drivers.map((d) => d.name);
}

/** Probes by head magic; then, if only raw matched and a tail is given, by trailer. */
export function probeFormat(
  head: Uint8Array,
  size: number,
  tail?: Uint8Array,
  name = '',
): FormatDriver {
  const found = drivers.find((d) => d.probe(head, size));
  if (!found) throw new Error('no raw driver registered');
  if (found.name !== 'raw' || tail === undefined) return found;
  return drivers.find((d) => d.probeTail?.(tail, size, name)) ?? found;
}

/** Reads a source's head and tail and probes its format. */
export async function probeSourceFormat(source: ByteSource): Promise<FormatDriver> {
  const head = new Uint8Array(Math.min(PROBE_BYTES, source.size));
  const n = await source.read(head, 0);
  let tail: Uint8Array | undefined;
  if (source.size >= TAIL_PROBE_BYTES) {
    tail = new Uint8Array(TAIL_PROBE_BYTES);
    if ((await source.read(tail, source.size - TAIL_PROBE_BYTES)) !== TAIL_PROBE_BYTES) {
      tail = undefined;
    }
  }
  return probeFormat(head.subarray(0, n), source.size, tail, source.name);
}
