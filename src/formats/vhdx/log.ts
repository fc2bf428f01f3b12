/**
 * The VHDX metadata log ([MS-VHDX] 2.3). A file whose header names a log GUID may hold log
 * entries that were written but not yet applied; they must be replayed before anything else is
 * read. diskpipe never writes the image, so it replays them in memory: the result is a byte
 * source that reads the file as it would be after replay (what `qemu-img check -r all` writes).
 *
 * Finding the active sequence follows qemu: every 4 KiB position is tried as the start of a
 * chain of valid entries with consecutive sequence numbers; the chain with the highest sequence
 * number is replayed in order.
 */

import { CorruptImageError, UnsupportedFeatureError } from '../../errors.js';
import type { ByteSource } from '../../image/types.js';
import { view } from '../../io/bytes.js';
import { ascii, readExact, u64 } from '../vhd/bytes.js';
import { checksumValid } from './crc32c.js';
import { guidAt } from './guid.js';
import { MiB } from './structures.js';

const SECTOR = 4096;
/** Most 4 KiB sectors a replay may hold in memory (64 MiB). */
const MAX_REPLAY_SECTORS = 16384;
/** Largest log diskpipe reads to replay (the format allows 4 GiB; real logs are 1 MiB). */
const MAX_LOG_BYTES = 32 * MiB;

interface Descriptor {
  zero: boolean;
  fileOffset: number;
  /** zero: the length; data: 4096 */
  length: number;
  leading?: Uint8Array;
  trailing?: Uint8Array;
}

interface Entry {
  /** Position in the log. */
  at: number;
  length: number;
  sequence: bigint;
  flushedFileOffset: number;
  lastFileOffset: number;
  descriptors: Descriptor[];
  /** Data sectors, in descriptor order (the 4084 payload bytes each). */
  data: Uint8Array[];
}

/** The replayed view of a file: the log's sectors laid over the original bytes. */
export class ReplayedSource implements ByteSource {
  constructor(
    private readonly inner: ByteSource,
    readonly size: number,
    /** 4 KiB sector index -> its bytes after replay (null: zeroes). */
    private readonly sectors: Map<number, Uint8Array | null>,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get path(): string | undefined {
    return this.inner.path;
  }

  async read(buf: Uint8Array, offset: number): Promise<number> {
    const want = Math.max(0, Math.min(buf.length, this.size - offset));
    const n = await this.inner.read(buf.subarray(0, want), offset);
    buf.fill(0, n, want); // the log may extend the file: new bytes read as zero
    const first = Math.floor(offset / SECTOR);
    const last = Math.floor((offset + want - 1) / SECTOR);
    for (let s = first; s <= last && want > 0; s++) {
      if (!this.sectors.has(s)) continue;
      const content = this.sectors.get(s);
      const from = Math.max(offset, s * SECTOR);
      const to = Math.min(offset + want, (s + 1) * SECTOR);
      if (content) buf.set(content.subarray(from - s * SECTOR, to - s * SECTOR), from - offset);
      else buf.fill(0, from - offset, to - offset);
    }
    return want;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Returns `source` itself when there is nothing to replay, else the replayed view.
 * `logGuid` is the current header's; `regions` are checked not to be overwritten oddly.
 */
export async function replayLog(
  source: ByteSource,
  log: { guid: string; offset: number; length: number },
  label: string,
): Promise<{ source: ByteSource; replayed: number }> {
  if (log.length === 0) return { source, replayed: 0 };
  if (log.length > MAX_LOG_BYTES) {
    throw new UnsupportedFeatureError(
      `${label}: VHDX log of ${log.length} bytes needs replay and is too large`,
    );
  }
  const area = await readExact(source, log.offset, log.length, 'log');
  const entries = activeSequence(area, log.guid);
  if (entries.length === 0) return { source, replayed: 0 };
  const sectors = new Map<number, Uint8Array | null>();
  let size = source.size;
  for (const e of entries) {
    // A log that says the file was longer than it is: the file was truncated.
    if (e.flushedFileOffset > source.size) {
      throw new CorruptImageError(
        `${label}: log entry expects the file to be ${e.flushedFileOffset} bytes; it is ${source.size} (truncated)`,
      );
    }
    let dataIndex = 0;
    for (const d of e.descriptors) {
      if (d.zero) {
        for (let off = d.fileOffset; off < d.fileOffset + d.length; off += SECTOR) {
          setSector(sectors, off / SECTOR, null, label);
        }
        continue;
      }
      const sector = new Uint8Array(SECTOR);
      sector.set(d.leading!, 0);
      sector.set(e.data[dataIndex++]!, 8);
      sector.set(d.trailing!, SECTOR - 4);
      setSector(sectors, d.fileOffset / SECTOR, sector, label);
    }
    if (e.lastFileOffset > size) size = Math.ceil(e.lastFileOffset / MiB) * MiB;
  }
  for (const s of sectors.keys()) size = Math.max(size, (s + 1) * SECTOR);
  return { source: new ReplayedSource(source, size, sectors), replayed: entries.length };
}

function setSector(
  sectors: Map<number, Uint8Array | null>,
  index: number,
  content: Uint8Array | null,
  label: string,
): void {
  sectors.set(index, content);
  if (sectors.size > MAX_REPLAY_SECTORS) {
    throw new UnsupportedFeatureError(
      `${label}: VHDX log needs replay and is too large to replay in memory`,
    );
  }
}

/** The chain of valid entries with the highest sequence number, in replay order. */
function activeSequence(area: Uint8Array, guid: string): Entry[] {
  const parsed = new Map<number, Entry | null>();
  const entryAt = (at: number) => {
    let e = parsed.get(at);
    if (e === undefined) {
      e = parseEntry(area, at, guid);
      parsed.set(at, e);
    }
    return e;
  };
  let best: Entry[] = [];
  // An entry already walked as part of a chain starts only a suffix of it, with the same head:
  // never better. Skipping those keeps the search linear in the log's entries.
  const walked = new Set<number>();
  for (let at = 0; at < area.length; at += SECTOR) {
    if (walked.has(at)) continue;
    const first = entryAt(at);
    if (!first) continue;
    const chain = [first];
    const inChain = new Set([at]);
    for (;;) {
      const prev = chain.at(-1)!;
      const next = entryAt((prev.at + prev.length) % area.length);
      if (!next || next.sequence !== prev.sequence + 1n) break;
      if (inChain.has(next.at)) break;
      inChain.add(next.at);
      chain.push(next);
    }
    for (const p of inChain) walked.add(p);
    const head = chain.at(-1)!;
    if (best.length === 0 || head.sequence > best.at(-1)!.sequence) best = chain;
  }
  return best;
}

/** Reads `length` bytes of the circular log starting at `at`. */
function wrapped(area: Uint8Array, at: number, length: number): Uint8Array {
  if (at + length <= area.length) return area.subarray(at, at + length);
  const out = new Uint8Array(length);
  const first = area.length - at;
  out.set(area.subarray(at), 0);
  out.set(area.subarray(0, length - first), first);
  return out;
}

/** A valid entry at `at`, or null: header, descriptors, data sectors and CRC all check out. */
function parseEntry(area: Uint8Array, at: number, guid: string): Entry | null {
  const head = area.subarray(at, at + 64);
  if (ascii(head, 0, 4) !== 'loge') return null;
  const hv = view(head);
  const length = hv.getUint32(8, true);
  const sequence = hv.getBigUint64(16, true);
  const count = hv.getUint32(24, true);
  if (length === 0 || length % SECTOR !== 0 || length > area.length || sequence === 0n) return null;
  if (guidAt(head, 32) !== guid || count * 32 > length) return null;
  const entry = wrapped(area, at, length);
  const ev = view(entry);
  if (!checksumValid(entry, 4)) return null;
  const descSectors = Math.ceil((count + 2) / 128);
  const dataSectors = length / SECTOR - descSectors;
  const descriptors: Descriptor[] = [];
  const data: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const d = 64 + i * 32;
    const sig = ascii(entry, d, 4);
    const fileOffset = safe(ev.getBigUint64(d + 16, true));
    if (fileOffset === undefined || fileOffset % SECTOR !== 0) return null;
    if (ev.getBigUint64(d + 24, true) !== sequence) return null;
    if (sig === 'zero') {
      const zeroLength = safe(ev.getBigUint64(d + 8, true));
      if (zeroLength === undefined || zeroLength % SECTOR !== 0) return null;
      descriptors.push({ zero: true, fileOffset, length: zeroLength });
    } else if (sig === 'desc') {
      const s = (descSectors + data.length) * SECTOR;
      if (data.length >= dataSectors || ascii(entry, s, 4) !== 'data') return null;
      const high = BigInt(ev.getUint32(s + 4, true));
      const low = BigInt(ev.getUint32(s + SECTOR - 4, true));
      if (((high << 32n) | low) !== sequence) return null;
      data.push(entry.subarray(s + 8, s + SECTOR - 4));
      descriptors.push({
        zero: false,
        fileOffset,
        length: SECTOR,
        trailing: entry.subarray(d + 4, d + 8),
        leading: entry.subarray(d + 8, d + 16),
      });
    } else return null;
  }
  try {
    return {
      at,
      length,
      sequence,
      flushedFileOffset: u64(hv, 48, true, 'log flushed file offset'),
      lastFileOffset: u64(hv, 56, true, 'log last file offset'),
      descriptors,
      data,
    };
  } catch {
    return null;
  }
}

function safe(v: bigint): number | undefined {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}
