/**
 * Shared pieces of the vpc, vhdx and qed tests: a mixed test pattern, zero runs, and hostile
 * images that must fail cleanly. The comparison with qemu is test/helpers/qemu-compare.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Image } from '../../src/image/types.js';
import { openCounted, type ReadCount } from '../helpers/counting-source.js';
import { checkedExtents, zeroRuns } from '../helpers/extents.js';
import { type QemuMapEntry, qemuIo, sparseFile } from '../helpers/peers.js';

export const MiB = 1024 * 1024;

/**
 * A raw file with a mixed pattern: data runs, zero runs, unaligned writes, writes crossing
 * 1/2/8 MiB block boundaries, explicit zeroes inside data, and data in the last sector.
 */
export async function mixedRaw(dir: string, name: string, size: number): Promise<string> {
  const path = sparseFile(join(dir, name), size);
  const writes: [string, number, number][] = [
    ['-P 0x11', 0, MiB],
    ['-P 0x22', 3 * MiB, 100 * 1024],
    ['-P 0x33', 5000000, 3333],
    ['-P 0x44', 2 * MiB - 4096, 8192],
    ['-P 0x55', 8 * MiB - 512, 1536],
    ['-P 0x66', 12 * MiB, MiB],
    ['-z', 12 * MiB + 4096, 8192],
    ['-P 0x77', size - 512, 512],
  ];
  await qemuIo(
    path,
    writes
      .filter(([, off, len]) => off + len <= size)
      .map(([p, off, len]) => `write ${p} ${off} ${len}`),
    'raw',
  );
  return path;
}

/** qemu's per-byte zero view, clipped to the image (qemu may round sizes up). */
export function qemuZeroRuns(map: QemuMapEntry[], size: number): [number, number, boolean][] {
  return zeroRuns(
    map
      .filter((e) => e.start < size)
      .map((e) => ({ ...e, length: Math.min(e.length, size - e.start) })),
  );
}

export async function ourZeroRuns(
  image: Image,
  offset = 0,
  length = image.size - offset,
): Promise<[number, number, boolean][]> {
  const ext = await checkedExtents(image, offset, length);
  return zeroRuns(ext.map((e) => ({ start: e.offset, length: e.length, zero: e.zero })));
}

/**
 * Opens and reads an image, expecting a DiskpipeError with `code` (and a message matching
 * `message`) at open, at a full read, or while walking extents — never a crash or a hang.
 */
export async function expectFailure(
  path: string,
  code: string,
  message: RegExp,
  opts: { format?: string; untrusted?: boolean } = {},
): Promise<void> {
  let image: Image | undefined;
  const reads: ReadCount = { calls: 0, bytes: 0 };
  try {
    image = await openCounted(path, reads, opts);
    // Walk all extents, then read data extents with a bounded buffer (sizes may be absurd).
    const buf = new Uint8Array(MiB);
    let budget = 64 * MiB;
    for await (const e of image.extents()) {
      for (let off = e.offset; !e.zero && off < e.offset + e.length && budget > 0; off += MiB) {
        const n = Math.min(MiB, e.offset + e.length - off);
        await image.read(buf.subarray(0, n), off);
        budget -= n;
      }
    }
    assert.fail(`expected ${code} for ${path}`);
  } catch (err) {
    const e = err as { code?: string; message: string };
    assert.equal(e.code, code, `code for ${path}: ${e.message}`);
    assert.match(e.message, message);
  } finally {
    await image?.close();
  }
  // Failing is bounded work: the cases here need at most ~20 reads and ~6 MiB of the file, and
  // the full read above is capped at 64 MiB; a loop over an absurd table would go far past.
  assert.ok(reads.calls <= 1024 && reads.bytes <= 128 * MiB, `reads: ${JSON.stringify(reads)}`);
}
