/**
 * The content digest of a download that turns out to be a plain raw image, computed while it
 * streams (on a worker thread): then the downloaded file is the cache's raw file and nothing
 * is converted, written or read again. The first bytes tell whether the download can be raw at
 * all (no compression, archive or image-format magic); if not, hashing stops there and the
 * converter does the work.
 */
import { PROBE_BYTES, probeFormat } from '../formats/registry.js';
import { detectCompression } from '../sources/decompress/index.js';
import { looksLikeTar } from '../sources/tar.js';
import { StreamDigests } from './stream-digest.js';

export class RawContentHash {
  private hash: StreamDigests | undefined;
  /** The first chunks, held until they show whether the download can be raw. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private decided = false;
  private notRaw = false;

  /** Starts over: each download attempt feeds the whole file again from offset 0. */
  restart(): void {
    this.close();
    this.held = [];
    this.heldBytes = 0;
    this.decided = false;
    this.notRaw = false;
  }

  /** Takes the next bytes; a returned promise asks the download to wait for the hash. */
  data(chunk: Uint8Array): Promise<void> | undefined {
    if (this.notRaw) return undefined;
    if (this.decided) return this.hash!.update(chunk);
    this.held.push(Buffer.from(chunk));
    this.heldBytes += chunk.length;
    if (this.heldBytes >= PROBE_BYTES) this.decide();
    return undefined;
  }

  /** The blkhash of exactly `size` bytes, if everything was hashed and could be raw. */
  async digest(size: number): Promise<string | undefined> {
    if (!this.decided) this.decide();
    const hash = this.hash;
    this.hash = undefined;
    if (!hash || hash.length !== size) {
      hash?.close();
      return undefined;
    }
    return (await hash.finish()).blkhash;
  }

  /** Stops hashing (its worker ends). */
  close(): void {
    this.hash?.close();
    this.hash = undefined;
  }

  private decide(): void {
    this.decided = true;
    const held = this.held;
    this.held = [];
    const head = Buffer.concat(held).subarray(0, PROBE_BYTES);
    const raw =
      !detectCompression(head) &&
      !looksLikeTar(head) &&
      probeFormat(head, Number.MAX_SAFE_INTEGER).name === 'raw';
    if (!raw) {
      this.notRaw = true;
      return;
    }
    this.hash = new StreamDigests(['blkhash']);
    // At most PROBE_BYTES plus one chunk: no need to wait for the worker here.
    for (const b of held) this.hash.update(b)?.catch(() => {});
  }
}
