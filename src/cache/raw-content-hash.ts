/**
 * The content digest of a download that turns out to be a plain raw image, computed while it
 * streams: then the downloaded file is the cache's raw file and nothing is converted, written
 * or read again. The first bytes tell whether the download can be raw at all (no compression,
 * archive or image-format magic); if not, hashing stops there and the converter does the work.
 */
import { PROBE_BYTES, probeFormat } from '../formats/registry.js';
import { BlkHash } from '../ops/checksum/index.js';
import { detectCompression } from '../sources/decompress/index.js';
import { looksLikeTar } from '../sources/tar.js';

export class RawContentHash {
  private hash: BlkHash | undefined = new BlkHash();
  private head = Buffer.alloc(0);
  private decided = false;

  /** Starts over: each download attempt feeds the whole file again from offset 0. */
  restart(): void {
    this.hash = new BlkHash();
    this.head = Buffer.alloc(0);
    this.decided = false;
  }

  data(chunk: Uint8Array): void {
    if (!this.hash) return;
    if (!this.decided) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, PROBE_BYTES)]);
      if (this.head.length >= PROBE_BYTES) this.decide();
      if (!this.hash) return;
    }
    this.hash.update(chunk);
  }

  /** The blkhash of exactly `size` bytes, if everything was hashed and could be raw. */
  digest(size: number): string | undefined {
    if (!this.decided) this.decide();
    if (!this.hash || this.hash.length !== size) return undefined;
    const hex = this.hash.digest('hex');
    this.hash = undefined;
    return hex;
  }

  private decide(): void {
    this.decided = true;
    const head = this.head.subarray(0, PROBE_BYTES);
    const raw =
      !detectCompression(head) &&
      !looksLikeTar(head) &&
      probeFormat(head, Number.MAX_SAFE_INTEGER).name === 'raw';
    if (!raw) this.hash = undefined;
  }
}
