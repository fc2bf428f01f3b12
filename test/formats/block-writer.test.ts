/**
 * The block-map writers (vmdk monolithicSparse, vhd dynamic, vhdx, vdi) driven directly with
 * many parallel, out-of-order, unaligned writes and zeroes, some landing in the same block at
 * once: the result must pass `qemu-img check` and compare equal to the expected bytes.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { VdiWriter } from '../../src/formats/vdi/writer.js';
import { VhdDynamicWriter } from '../../src/formats/vhd/writer.js';
import { VhdxWriter } from '../../src/formats/vhdx/writer.js';
import { VmdkSparseWriter } from '../../src/formats/vmdk/writer/index.js';
import type { ImageWriter } from '../../src/formats/writers.js';
import { LocalFile } from '../../src/io/file.js';
import { qemuImg, tempDir } from '../helpers/peers.js';
import { pattern } from '../ops/util.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const SIZE = 40 * MiB + 3 * 512;

const WRITERS: [string, string, (f: LocalFile) => Promise<ImageWriter>][] = [
  ['vmdk', 'vmdk', (f) => VmdkSparseWriter.create(f, { size: SIZE, fileName: 'w.vmdk' })],
  ['vpc', 'vpc', (f) => VhdDynamicWriter.create(f, { size: SIZE, forceSize: true })],
  ['vhdx', 'vhdx', (f) => VhdxWriter.create(f, { size: SIZE })],
  ['vhdx 1M blocks', 'vhdx', (f) => VhdxWriter.create(f, { size: SIZE, blockSize: MiB })],
  ['vdi', 'vdi', (f) => VdiWriter.create(f, { size: SIZE })],
];

/** Deterministic ranges: [offset, length, zero?], shuffled. */
function operations(): [number, number, boolean][] {
  const ops: [number, number, boolean][] = [];
  let s = 12345;
  const next = (n: number) => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % n;
  };
  for (let i = 0; i < 120; i++) {
    const length = 1 + next(300 * 1024);
    const offset = next(SIZE - length);
    ops.push([offset, length, next(5) === 0]);
  }
  ops.push([SIZE - 512, 512, false]); // the last sector
  return ops;
}

for (const [name, format, make] of WRITERS) {
  test(`${name}: parallel out-of-order writes and zeroes read back as expected`, async () => {
    const path = join(dir, `${name.replace(/\W+/g, '-')}.${format}`);
    const writer = await make(await LocalFile.open(path, 'w+'));
    assert.equal(writer.size, SIZE);
    const expect = Buffer.alloc(SIZE);
    // Apply in batches of 8 in flight; overlapping ranges go to different batches so the
    // expected bytes do not depend on completion order.
    const ops = operations();
    for (let i = 0; i < ops.length; i += 8) {
      const batch = ops.slice(i, i + 8);
      const disjoint: [number, number, boolean][] = [];
      for (const op of batch) {
        const clash = disjoint.some(([o, l]) => op[0] < o + l && o < op[0] + op[1]);
        if (!clash) disjoint.push(op);
      }
      await Promise.all(
        disjoint.map(([offset, length, zero]) => {
          if (zero) {
            expect.fill(0, offset, offset + length);
            return writer.zero!(offset, length);
          }
          const data = pattern(length, offset, i);
          data.copy(expect, offset);
          return writer.write!(data, offset);
        }),
      );
    }
    await writer.close();
    const raw = `${path}.expect.raw`;
    writeFileSync(raw, expect);
    if (format !== 'vpc') await qemuImg('check', '-q', '-f', format, path);
    assert.match(
      await qemuImg('compare', '-f', 'raw', '-F', format, raw, path),
      /Images are identical/,
    );
  });
}
