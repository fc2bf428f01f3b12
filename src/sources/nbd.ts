/**
 * An NBD export as a ByteSource: `nbd://host[:port]/export` or `nbd+unix:///export?socket=PATH`.
 * Formats are probed on it like on a file (a qcow2 behind `nbdkit file` reads as qcow2); when it
 * is read as raw, RawImage takes its extents from the export's base:allocation and, if the
 * export is writable and was opened for writing, writes through `writer`.
 * Bytes from NBD are untrusted: images on it may not reference other files.
 */
import { NotCapableError } from '../errors.js';
import type { ByteSource, Extent, SourceWriter } from '../image/types.js';
import { NbdClient, type NbdClientOptions } from '../nbd/client/connection.js';
import { parseNbdUri } from '../nbd/uri.js';
import type { OpenedSource, SourceOptions } from './opened.js';

export class NbdSource implements ByteSource {
  readonly extents?: (offset: number, length: number) => AsyncIterable<Extent>;
  readonly writer?: SourceWriter;

  constructor(
    readonly client: NbdClient,
    writable: boolean,
  ) {
    if (client.hasAllocation) this.extents = (offset, length) => client.extents(offset, length);
    if (writable) {
      this.writer = {
        write: (buf, offset) => client.pwrite(buf, offset),
        zero: (offset, length, mayTrim) => client.zero(offset, length, mayTrim),
        trim: (offset, length) => client.trim(offset, length),
        flush: () => client.flush(),
      };
    }
  }

  get name(): string {
    return this.client.name;
  }

  get size(): number {
    return this.client.size;
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    const n = Math.max(0, Math.min(buf.length, this.size - offset));
    if (n > 0) await this.client.pread(buf.subarray(0, n), offset);
    return n;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** Connects to an NBD URI; with `writable`, the export must accept writes. */
export async function openNbdSource(
  spec: string,
  opts: SourceOptions & NbdClientOptions = {},
): Promise<NbdSource> {
  const client = await NbdClient.connect(parseNbdUri(spec), opts);
  if (opts.writable && client.readOnly) {
    await client.close();
    throw new NotCapableError(`${client.name}: the export is read-only`);
  }
  return new NbdSource(client, opts.writable ?? false);
}

/** The opener registered for the nbd and nbd+unix schemes. */
export async function openNbd(spec: string, opts: SourceOptions): Promise<OpenedSource> {
  return { source: await openNbdSource(spec, opts), untrusted: true };
}
