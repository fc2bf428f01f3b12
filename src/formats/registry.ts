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
  open(source: ByteSource, ctx: OpenContext): Promise<Image>;
}

export const PROBE_BYTES = 4096;

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

export function probeFormat(head: Uint8Array, size: number): FormatDriver {
  const found = drivers.find((d) => d.probe(head, size));
  if (!found) throw new Error('no raw driver registered');
  return found;
}
