/**
 * What the cache remembers. An entry is a blob (a converted raw image stored under its content
 * digest) with its metadata; a source record maps one URL to the blob it produced.
 */
import { lstat, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CacheError } from '../errors.js';
import { readJson, writeJsonDurably } from '../io/json-file.js';
import type { CacheLayout } from './layout.js';

export interface BlobRecord {
  version: 1;
  /** blkhash (sha256, 64 KiB blocks) of the raw image: also its file name. */
  contentDigest: string;
  virtualSize: number;
  /** Bytes the sparse raw file occupies on disk. */
  allocatedSize: number;
  created: string;
  lastUsed: string;
}

export interface SourceRecord {
  version: 1;
  url: string;
  etag?: string;
  lastModified?: string;
  download: {
    size: number;
    sha256: string;
    /** The digest the user asked to verify, as given (sha256 or sha512). */
    verified?: { algorithm: string; hex: string };
  };
  sourceFormat: string;
  /** Compression wrapped around the image (xz, gzip, zstd, bzip2), or null. */
  compression: string | null;
  contentDigest: string;
  virtualSize: number;
  allocatedSize: number;
  created: string;
  lastUsed: string;
}

export interface Pin {
  version: 1;
  /** The disk (a qcow2 overlay) whose backing file is the blob. */
  path: string;
  created: string;
}

export interface PinState extends Pin {
  /**
   * The disk was not found when the entry was read. The pin still counts (the disk may have
   * been moved and moved back); only `cache unpin`, `rm --force` and
   * `prune --drop-missing-pins` remove pins.
   */
  unverified: boolean;
}

/** `cache verify` found the blob does not match its digest; it is not handed out. */
export interface BadMark {
  version: 1;
  problem: string;
  time: string;
}

export interface CacheEntry {
  blob: BlobRecord;
  sources: SourceRecord[];
  /** Every pin, including unverified ones. */
  pins: PinState[];
  bad?: BadMark | undefined;
}

export const now = (): string => new Date().toISOString();

export class CacheIndex {
  constructor(readonly layout: CacheLayout) {}

  async blob(digest: string): Promise<BlobRecord | undefined> {
    const record = await readJson<BlobRecord>(this.layout.blobMetaPath(digest));
    if (!record) return undefined;
    // A record never counts without its data: a kill between writes leaves no dangling entry.
    const data = await stat(this.layout.blobPath(digest)).catch(() => undefined);
    return data ? record : undefined;
  }

  async source(url: string): Promise<SourceRecord | undefined> {
    return readJson<SourceRecord>(this.layout.recordPath(url));
  }

  saveBlob(record: BlobRecord): Promise<void> {
    return writeJsonDurably(this.layout.blobMetaPath(record.contentDigest), record);
  }

  saveSource(record: SourceRecord): Promise<void> {
    return writeJsonDurably(this.layout.recordPath(record.url), record);
  }

  async removeSource(url: string): Promise<void> {
    await unlink(this.layout.recordPath(url)).catch(() => {});
  }

  async blobs(): Promise<BlobRecord[]> {
    const names = await readdir(this.layout.blobsDir).catch(() => [] as string[]);
    const out: BlobRecord[] = [];
    for (const name of names) {
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      const record = m ? await this.blob(m[1]!) : undefined;
      if (record) out.push(record);
    }
    return out;
  }

  async sources(): Promise<SourceRecord[]> {
    const names = await readdir(this.layout.recordsDir).catch(() => [] as string[]);
    const out: SourceRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const record = await readJson<SourceRecord>(join(this.layout.recordsDir, name));
      if (record) out.push(record);
    }
    return out;
  }

  /** Every pin of a blob. Read-only: a pin whose disk is missing is marked, never dropped. */
  async pins(digest: string): Promise<PinState[]> {
    const dir = this.layout.pinDir(digest);
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: PinState[] = [];
    for (const name of names.filter((n) => /^[0-9a-f]{64}\.json$/.test(n))) {
      const pin = await readJson<Pin>(join(dir, name));
      if (!pin || typeof pin.path !== 'string') continue;
      const exists = await lstat(pin.path).then(
        () => true,
        (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
      );
      out.push({ ...pin, unverified: !exists });
    }
    return out;
  }

  async savePin(digest: string, path: string): Promise<void> {
    await mkdir(this.layout.pinDir(digest), { recursive: true });
    await writeJsonDurably(this.layout.pinPath(digest, path), {
      version: 1,
      path,
      created: now(),
    } satisfies Pin);
  }

  /** Removes the pin of `path` on a blob; true if there was one. Callers hold the blob's lock. */
  async removePin(digest: string, path: string): Promise<boolean> {
    return unlink(this.layout.pinPath(digest, path)).then(
      () => true,
      () => false,
    );
  }

  async badMark(digest: string): Promise<BadMark | undefined> {
    return readJson<BadMark>(this.layout.badMarkPath(digest));
  }

  markBad(digest: string, problem: string): Promise<void> {
    return writeJsonDurably(this.layout.badMarkPath(digest), {
      version: 1,
      problem,
      time: now(),
    } satisfies BadMark);
  }

  async clearBad(digest: string): Promise<void> {
    await unlink(this.layout.badMarkPath(digest)).catch(() => {});
  }

  /** The entry of one blob, read afresh (callers that act on it hold the blob's lock). */
  async entry(digest: string): Promise<CacheEntry | undefined> {
    const blob = await this.blob(digest);
    if (!blob) return undefined;
    const sources = (await this.sources()).filter((s) => s.contentDigest === digest);
    return { blob, sources, pins: await this.pins(digest), bad: await this.badMark(digest) };
  }

  async entries(): Promise<CacheEntry[]> {
    const sources = await this.sources();
    const out: CacheEntry[] = [];
    for (const blob of await this.blobs()) {
      out.push({
        blob,
        sources: sources.filter((s) => s.contentDigest === blob.contentDigest),
        pins: await this.pins(blob.contentDigest),
        bad: await this.badMark(blob.contentDigest),
      });
    }
    return out.sort((a, b) => b.blob.lastUsed.localeCompare(a.blob.lastUsed));
  }

  /**
   * Finds an entry by REF: a source URL, a pulled local file's path, or a content digest (full,
   * or a unique prefix of at least 8 hex digits).
   */
  async resolve(ref: string): Promise<CacheEntry> {
    const entries = await this.entries();
    if (/^[0-9a-f]{8,64}$/i.test(ref)) {
      const matches = entries.filter((e) => e.blob.contentDigest.startsWith(ref.toLowerCase()));
      if (matches.length === 1) return matches[0]!;
      if (matches.length > 1)
        throw new CacheError(`'${ref}' matches ${matches.length} cache entries; give more digits`);
    }
    const byUrl = entries.find((e) => e.sources.some((s) => s.url === ref));
    if (byUrl) return byUrl;
    // A local file that was pulled is recorded under its absolute file:// URL.
    if (!/^[a-z][a-z0-9+.-]*:/i.test(ref)) {
      const url = pathToFileURL(resolvePath(ref)).href;
      const byPath = entries.find((e) => e.sources.some((s) => s.url === url));
      if (byPath) return byPath;
    }
    if (/^[0-9a-f]{1,7}$/i.test(ref))
      throw new CacheError(`digest prefix '${ref}' is too short: give at least 8 hex digits`);
    throw new CacheError(`no cache entry for '${ref}'`);
  }
}
