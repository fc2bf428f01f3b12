/**
 * Adjacent READs of one connection, served as one read. Clients pipeline many small reads of
 * consecutive ranges (nbdcopy: 256 KiB each, 64 in flight), and every image read pays a fixed
 * cost: an extent walk, a walk of the cluster map, for compressed clusters a decode worker
 * round trip. Reads queued in one event-loop turn are sorted and grouped (consecutive ranges,
 * up to MAX_GROUP_BYTES); a group costs one extent walk and one image read per data extent,
 * into one pooled buffer, and its replies go to the socket in one gathered write.
 */
import type { Socket } from 'node:net';
import type { Image } from '../../image/types.js';
import type { BufferPool } from '../buffer-pool.js';
import {
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeSimpleReply,
  REPLY_FLAG_DONE,
} from '../protocol.js';
import { writeMessage } from '../wire.js';
import type { KnownExtents } from './known-extents.js';
import { type ReadRequest, readReply } from './read-reply.js';

/**
 * Largest group. Large enough that per-read costs fade (a compressed batch of 32 clusters),
 * small enough that a connection's read-ahead (4 MiB) holds two groups: one being sent while
 * the next is read.
 */
export const MAX_GROUP_BYTES = 2 * 1024 * 1024;

interface Pending {
  req: ReadRequest;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class ReadGrouper {
  private queue: Pending[] = [];
  private scheduled = false;
  /** Reads served, and how many image reads (groups) they took: counts for tests. */
  readonly counts = { requests: 0, groups: 0 };

  constructor(
    private readonly image: Image,
    private readonly pool: BufferPool,
    private readonly socket: Socket,
    /** Extents already known (a read-only export's last BLOCK_STATUS): no second walk. */
    private readonly known?: KnownExtents,
    private readonly maxGroup = MAX_GROUP_BYTES,
  ) {}

  /**
   * Reads `req` and sends its reply. Rejects with the read's error (nothing was sent: the
   * caller replies with the error) or with the socket's ConnectionClosedError.
   */
  serve(req: ReadRequest): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      // After this turn's I/O callbacks: every READ parsed in this turn joins the queue first.
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queued = this.queue.sort((a, b) => a.req.offset - b.req.offset);
    this.queue = [];
    let group: Pending[] = [];
    let end = -1;
    let bytes = 0;
    const close = () => {
      if (group.length > 0) void this.run(group);
      group = [];
      bytes = 0;
    };
    for (const p of queued) {
      const { offset, length } = p.req;
      if (offset !== end || bytes + length > this.maxGroup) close();
      group.push(p);
      end = offset + length;
      bytes += length;
      // An empty read is answered alone (its reply has no chunk to share).
      if (length === 0) {
        close();
        end = -1;
      }
    }
    close();
  }

  private async run(group: Pending[]): Promise<void> {
    this.counts.groups++;
    this.counts.requests += group.length;
    if (group.length === 1) return this.single(group[0]!);
    let read: GroupRead;
    try {
      read = await readGroup(
        this.image,
        this.pool,
        group.map((p) => p.req),
        this.known,
      );
    } catch {
      // Each request learns its own outcome: an error belongs to the read that hit it.
      for (const p of group) void this.single(p);
      return;
    }
    try {
      await writeMessage(this.socket, read.parts);
      for (const p of group) p.resolve();
    } catch (err) {
      for (const p of group) p.reject(err);
    } finally {
      this.pool.give(read.buffer);
    }
  }

  private async single(p: Pending): Promise<void> {
    try {
      const { offset, length } = p.req;
      const known = length > 0 ? this.known?.lookup(offset, length) : undefined;
      const reply = await readReply(this.image, this.pool, p.req, known);
      try {
        await writeMessage(this.socket, reply.parts);
      } finally {
        for (const b of reply.buffers) this.pool.give(b);
      }
      p.resolve();
    } catch (err) {
      p.reject(err);
    }
  }
}

interface GroupRead {
  /** Every reply of the group, in order. */
  parts: Uint8Array[];
  /** The pool buffer the data parts are views of. */
  buffer: Uint8Array;
}

/** Reads consecutive, non-empty requests (sorted) with one extent walk into one buffer. */
async function readGroup(
  image: Image,
  pool: BufferPool,
  reqs: readonly ReadRequest[],
  known: KnownExtents | undefined,
): Promise<GroupRead> {
  const start = reqs[0]!.offset;
  const last = reqs.at(-1)!;
  const length = last.offset + last.length - start;
  let extents = known?.lookup(start, length);
  if (!extents) {
    extents = [];
    for await (const e of image.extents(start, length)) extents.push(e);
  }
  const buffer = pool.take(length);
  // Simple replies and DF carry zeroes as data: fill them in (never read).
  const flat = reqs.some((r) => !r.structured || r.df);
  const reads = extents.map((e) => {
    const part = buffer.subarray(e.offset - start, e.offset - start + e.length);
    if (!e.zero) return image.read(part, e.offset);
    if (flat) part.fill(0);
    return undefined;
  });
  // Every read settles before the buffer can go back to the pool.
  const results = await Promise.allSettled(reads);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    pool.give(buffer);
    throw (failed as PromiseRejectedResult).reason;
  }
  const parts: Uint8Array[] = [];
  let first = 0; // the first extent that may overlap the next request
  for (const r of reqs) {
    const data = buffer.subarray(r.offset - start, r.offset - start + r.length);
    if (!r.structured) {
      parts.push(encodeSimpleReply(r.cookie, 0), data);
      continue;
    }
    if (r.df) {
      parts.push(encodeOffsetDataHeader(r.cookie, REPLY_FLAG_DONE, r.offset, r.length), data);
      continue;
    }
    const xs = extents;
    while (xs[first]!.offset + xs[first]!.length <= r.offset) first++;
    const end = r.offset + r.length;
    let header: Uint8Array | undefined;
    for (let i = first; i < xs.length && xs[i]!.offset < end; i++) {
      const e = xs[i]!;
      const from = Math.max(e.offset, r.offset);
      const to = Math.min(e.offset + e.length, end);
      if (e.zero) {
        header = encodeOffsetHole(r.cookie, 0, from, to - from);
        parts.push(header);
      } else {
        header = encodeOffsetDataHeader(r.cookie, 0, from, to - from);
        parts.push(header, buffer.subarray(from - start, to - start));
      }
    }
    // The request's last chunk is final: flags are bytes 4-5 of its header.
    new DataView(header!.buffer, header!.byteOffset).setUint16(4, REPLY_FLAG_DONE);
  }
  return { parts, buffer };
}
