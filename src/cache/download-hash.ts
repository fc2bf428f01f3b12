/**
 * The digests of a download (sha256 always, plus the algorithm of an expected digest) and the
 * observer that follows the same bytes. `update` is the one place download bytes are hashed.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export type DigestAlgorithm = 'sha256' | 'sha512';

/** Sees every byte of a download in order from offset 0; `restart` comes before each attempt. */
export interface DownloadObserver {
  restart(): void;
  /** May return a promise to make the download wait for it (backpressure). */
  data(chunk: Uint8Array): Promise<void> | undefined | void;
}

export class DownloadHash {
  private readonly hashes = new Map<DigestAlgorithm, Hash>();

  /** Starts from byte 0 (an attempt then feeds a resumed prefix through `hashPrefix`). */
  constructor(
    extra: DigestAlgorithm | undefined,
    private readonly observer: DownloadObserver | undefined,
  ) {
    this.hashes.set('sha256', createHash('sha256'));
    if (extra && extra !== 'sha256') this.hashes.set(extra, createHash(extra));
    observer?.restart();
  }

  /** The next bytes of the download; a returned promise asks the download to wait for it. */
  update(chunk: Uint8Array): Promise<void> | undefined {
    for (const h of this.hashes.values()) h.update(chunk);
    const observed = this.observer?.data(chunk);
    return observed instanceof Promise ? observed : undefined;
  }

  /** Feeds the first `length` bytes of a partial file (kept from an earlier attempt). */
  async hashPrefix(path: string, length: number): Promise<void> {
    if (length <= 0) return;
    const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 });
    for await (const chunk of stream as AsyncIterable<Buffer>) await this.update(chunk);
  }

  digests(): Partial<Record<DigestAlgorithm, string>> {
    const out: Partial<Record<DigestAlgorithm, string>> = {};
    for (const [alg, h] of this.hashes) out[alg] = h.digest('hex');
    return out;
  }
}
