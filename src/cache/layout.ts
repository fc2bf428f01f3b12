/**
 * Where the image cache keeps things. Content-addressed: a converted raw image is stored once
 * under its content digest (blkhash sha256), and each URL record points at one.
 *
 *   blobs/<digest>.raw       read-only sparse raw images
 *   records/<key>.json       one per source URL (key = sha256 of the URL)
 *   blobs/<digest>.bad.json  quarantine mark written by `cache verify` (cleared by a re-pull)
 *   pins/<digest>/<key>.json disks (qcow2 overlays) whose backing file is that blob
 *   tmp/                     partial downloads and conversions, never pointed at by a record
 * Temporary files anywhere carry their owner's pid (temp-files.ts).
 *   locks/                   cross-process lock files
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CacheError, ioError } from '../errors.js';
import { defaultCacheDir } from '../io/cache-dir.js';

export { defaultCacheDir };

export function urlKey(url: string): string {
  return createHash('sha256').update(url).digest('hex');
}

const DIGEST = /^[0-9a-f]{64}$/;

export class CacheLayout {
  readonly root: string;

  constructor(root: string = defaultCacheDir()) {
    this.root = resolve(root);
  }

  get blobsDir(): string {
    return join(this.root, 'blobs');
  }
  get recordsDir(): string {
    return join(this.root, 'records');
  }
  get pinsDir(): string {
    return join(this.root, 'pins');
  }
  get tmpDir(): string {
    return join(this.root, 'tmp');
  }
  get locksDir(): string {
    return join(this.root, 'locks');
  }

  blobPath(digest: string): string {
    if (!DIGEST.test(digest)) throw new CacheError(`invalid content digest '${digest}'`);
    return join(this.blobsDir, `${digest}.raw`);
  }
  blobMetaPath(digest: string): string {
    return join(this.blobsDir, `${digest}.json`);
  }
  /** Written by `cache verify` when a blob does not match its digest; cleared by a re-pull. */
  badMarkPath(digest: string): string {
    return join(this.blobsDir, `${digest}.bad.json`);
  }
  /** pins/<digest>/<sha256 of the disk's path>.json */
  pinPath(digest: string, diskPath: string): string {
    return join(this.pinDir(digest), `${createHash('sha256').update(diskPath).digest('hex')}.json`);
  }
  recordPath(url: string): string {
    return join(this.recordsDir, `${urlKey(url)}.json`);
  }
  pinDir(digest: string): string {
    return join(this.pinsDir, digest);
  }
  lockPath(name: string): string {
    return join(this.locksDir, `${name}.lock`);
  }

  async ensure(): Promise<void> {
    for (const dir of [this.blobsDir, this.recordsDir, this.pinsDir, this.tmpDir, this.locksDir]) {
      try {
        await mkdir(dir, { recursive: true });
      } catch (err) {
        throw ioError(err, `cache directory ${this.root} is not writable`);
      }
    }
    // A read-only cache (a bind mount, other owner) failed later, naming an internal lock file
    // ('cannot create lock <cache>/locks/url-<sha256>.lock: EROFS').
    try {
      await access(this.locksDir, constants.W_OK);
    } catch (err) {
      throw ioError(err, `cache directory ${this.root} is not writable`);
    }
  }
}
