/**
 * Shared checks for the VMDK and VDI tests: build a mixed raw source with qemu-io, and compare
 * an image opened by diskpipe with qemu-img (convert -O raw content, map extents and mapping).
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { collectExtents } from '../../src/image/extents.js';
import type { Image } from '../../src/image/types.js';
import { type OpenOptions, openImage } from '../../src/open.js';
import { checkedExtents, zeroRuns } from '../helpers/extents.js';
import { type QemuMapEntry, qemuImg, qemuIo, qemuMap, sparseFile } from '../helpers/peers.js';
import { mergeMap, ourQemuMap } from '../helpers/qemu-compare.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/**
 * A raw file with data runs, zero runs, unaligned data, an explicitly written zero run (which
 * converters must skip) and data in the last sector. The size is a sector multiple plus
 * nothing: qemu rounds VMDK/VDI sizes to sectors.
 */
export async function mixedRaw(dir: string, name = 'src.raw', size = 5 * MiB + 3 * 512) {
  const path = sparseFile(join(dir, name), size);
  await qemuIo(
    path,
    [
      'write -P 0x11 0 64k',
      'write -P 0x22 200k 5000', // unaligned, crosses a 64 KiB grain boundary
      'write -z 300k 100k', // allocated zeroes in the raw file
      'write -P 0x33 1M 1536k', // a multi-grain run, past a VDI block boundary
      'write -P 0x44 3145000 1234', // unaligned, straddles the 3 MiB block boundary
      `write -P 0x55 ${size - 512} 512`, // the last sector
    ],
    'raw',
  );
  return path;
}

/** Reads a local file range (the peer's raw output) without loading the whole file. */
export function fileRange(path: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** Our extents (merged zero/data runs) must classify bytes as qemu-img map does. */
export async function assertExtentsMatch(image: Image, peer: QemuMapEntry[]): Promise<void> {
  const ours = (await checkedExtents(image)).map((e) => ({
    start: e.offset,
    length: e.length,
    zero: e.zero,
  }));
  assert.deepEqual(zeroRuns(ours), zeroRuns(peer));
}

/**
 * Opens `path` with diskpipe and checks it against qemu-img: size, every byte (equal to
 * `qemu-img convert -O raw`), extents against `qemu-img map`, and mapping() against the map
 * JSON itself when `exactMap`. Returns the open image (the caller closes it).
 */
export async function checkAgainstQemu(
  path: string,
  rawOut: string,
  opts: { exactMap?: boolean; open?: OpenOptions } = {},
): Promise<Image> {
  const image = await openImage(path, opts.open);
  try {
    await qemuImg('convert', '-O', 'raw', path, rawOut);
    const peer = await qemuMap(path);
    const peerSize = peer.reduce((n, e) => n + e.length, 0);
    assert.equal(image.size, peerSize, 'virtual size');
    // Compare content extent by extent. Data extents are compared whole; zero extents (which
    // the map comparison below checks against qemu) are compared at both ends, so that huge
    // sparse images stay fast.
    for (const e of await collectExtents(image.extents())) {
      const end = e.offset + e.length;
      const ranges: [number, number][] = e.zero
        ? [
            [e.offset, Math.min(end, e.offset + MiB)],
            [Math.max(e.offset, end - MiB), end],
          ]
        : [[e.offset, end]];
      for (const [from, to] of ranges) {
        for (let at = from; at < to; at += 4 * MiB) {
          const n = Math.min(4 * MiB, to - at);
          const ours = Buffer.alloc(n);
          await image.read(ours, at);
          if (!ours.equals(fileRange(rawOut, at, n))) {
            assert.fail(`content differs in [${at}, ${at + n})`);
          }
        }
      }
    }
    await assertExtentsMatch(image, peer);
    if (opts.exactMap !== false) assert.deepEqual(await ourQemuMap(image), mergeMap(peer));
    return image;
  } catch (err) {
    await image.close();
    throw err;
  }
}
