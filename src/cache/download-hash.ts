/**
 * The digests of a download (sha256 always, plus the algorithm of an expected digest) and,
 * when its first bytes could be a raw image, its blkhash: then the downloaded file is the
 * cache's raw file and nothing is converted or read again. `update` is the one place download
 * bytes are hashed (`update` copies, `take` lends shared memory); one worker thread hashes them
 * all (stream-digest.ts), so hashing overlaps the download and each byte is handed over once.
 */
import { createReadStream } from 'node:fs';
import { PROBE_BYTES } from '../formats/registry.js';
import { couldBeRaw } from './raw-head.js';
import { StreamDigests } from './stream-digest.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

export interface DownloadDigests {
  sha256?: string;
  sha512?: string;
  /** blkhash of the whole download, when its first bytes could be a raw image. */
  blkhash?: string;
}

export class DownloadHash {
  private readonly streams: StreamDigests;
  /** The first bytes, kept until they tell whether the download could be raw. */
  private head: Buffer | undefined;
  private headFill = 0;

  /** Starts from byte 0 (an attempt then feeds a resumed prefix through `hashPrefix`). */
  constructor(extra: DigestAlgorithm | undefined, rawContent = false) {
    this.streams = new StreamDigests(extra && extra !== 'sha256' ? ['sha256', extra] : ['sha256']);
    if (rawContent) this.head = Buffer.alloc(PROBE_BYTES);
  }

  /** The next bytes of the download (copied); a returned promise asks the download to wait. */
  update(chunk: Uint8Array): Promise<void> | undefined {
    // Decided before the chunk is handed over: blkhash must start at byte 0.
    if (this.head) this.look(chunk);
    return this.streams.update(chunk);
  }

  /**
   * The next bytes of the download, lent in shared memory (the write stages): resolves when the
   * worker has hashed them and they may be reused.
   */
  take(bytes: Uint8Array): Promise<void> {
    if (this.head) this.look(bytes);
    return this.streams.take(bytes);
  }

  /** The download could be a raw image (its blkhash is computed): it may be kept as it is. */
  get rawCandidate(): boolean {
    return this.streams.algorithms.includes('blkhash');
  }

  /** Feeds the first `length` bytes of a partial file (kept from an earlier attempt). */
  async hashPrefix(path: string, length: number): Promise<void> {
    if (length <= 0) return;
    const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 });
    for await (const chunk of stream as AsyncIterable<Buffer>) await this.update(chunk);
  }

  /** The hex digests of everything given; the hashing worker stops afterwards. */
  async digests(): Promise<DownloadDigests> {
    if (this.head) this.decide();
    const all = await this.streams.finish();
    const out: DownloadDigests = {};
    if (all.sha256 !== undefined) out.sha256 = all.sha256;
    if (all.sha512 !== undefined) out.sha512 = all.sha512;
    if (all.blkhash !== undefined) out.blkhash = all.blkhash;
    return out;
  }

  /** Stops the worker when the download ends without digests (idempotent). */
  close(): void {
    this.streams.close();
  }

  private look(chunk: Uint8Array): void {
    const head = this.head!;
    const n = Math.min(head.length - this.headFill, chunk.length);
    head.set(chunk.subarray(0, n), this.headFill);
    this.headFill += n;
    if (this.headFill === head.length) this.decide();
  }

  private decide(): void {
    const head = this.head!.subarray(0, this.headFill);
    this.head = undefined;
    // Nothing has gone to the worker yet (it takes 1 MiB batches): blkhash starts at byte 0.
    if (couldBeRaw(head)) this.streams.add('blkhash');
  }
}
