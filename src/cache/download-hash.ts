/**
 * The digests of a download (sha256 always, plus the algorithm of an expected digest) and the
 * observer that follows the same bytes. `update` is the one place download bytes are hashed;
 * the hashing itself runs on a worker thread (stream-digest.ts), so it overlaps the download.
 */
import { createReadStream } from 'node:fs';
import { StreamDigests } from './stream-digest.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

/** Sees every byte of a download in order from offset 0; `restart` comes before each attempt. */
export interface DownloadObserver {
  restart(): void;
  /** May return a promise to make the download wait for it (backpressure). */
  data(chunk: Uint8Array): Promise<void> | undefined | void;
}

export class DownloadHash {
  private readonly streams: StreamDigests;

  /** Starts from byte 0 (an attempt then feeds a resumed prefix through `hashPrefix`). */
  constructor(
    extra: DigestAlgorithm | undefined,
    private readonly observer: DownloadObserver | undefined,
  ) {
    this.streams = new StreamDigests(extra && extra !== 'sha256' ? ['sha256', extra] : ['sha256']);
    observer?.restart();
  }

  /** The next bytes of the download (copied); a returned promise asks the download to wait. */
  update(chunk: Uint8Array): Promise<void> | undefined {
    const hashing = this.streams.update(chunk);
    const observed = this.observer?.data(chunk);
    const observing = observed instanceof Promise ? observed : undefined;
    if (hashing && observing) return Promise.all([hashing, observing]).then(() => {});
    return hashing ?? observing;
  }

  /** Feeds the first `length` bytes of a partial file (kept from an earlier attempt). */
  async hashPrefix(path: string, length: number): Promise<void> {
    if (length <= 0) return;
    const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 });
    for await (const chunk of stream as AsyncIterable<Buffer>) await this.update(chunk);
  }

  /** The hex digests of everything given; the hashing worker stops afterwards. */
  async digests(): Promise<Partial<Record<DigestAlgorithm, string>>> {
    const all = await this.streams.finish();
    const out: Partial<Record<DigestAlgorithm, string>> = {};
    if (all.sha256 !== undefined) out.sha256 = all.sha256;
    if (all.sha512 !== undefined) out.sha512 = all.sha512;
    return out;
  }

  /** Stops the worker when the download ends without digests (idempotent). */
  close(): void {
    this.streams.close();
  }
}
