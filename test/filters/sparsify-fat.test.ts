/** FAT12, FAT16 and FAT32 volumes from mkfs.vfat, sparsified whole-disk, checked by fsck.vfat. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { sparsify, sparsifyReport } from '../../src/filters/sparsify/index.js';
import { openImage } from '../../src/open.js';
import { convertImage } from '../../src/ops/convert.js';
import { run, tempDir } from '../helpers/peers.js';
import { deleteFatFile, readFatFiles, writeFatFiles } from './fat-files.js';
import { randomFile } from './sparsify-disk.js';

const dir = tempDir('diskpipe-sparsify-fat-');
const KiB = 1024;

const VARIANTS: [string, number, string[], string][] = [
  ['FAT12', 2 * 1024 * KiB, ['-F', '12'], 'fat12'],
  ['FAT16', 24 * 1024 * KiB, ['-F', '16', '-s', '4'], 'fat16'],
  ['FAT32', 40 * 1024 * KiB, ['-F', '32', '-s', '1'], 'fat32'],
];

for (const [name, size, mkfs, fs] of VARIANTS) {
  test(`${name}: free clusters dropped, files kept, fsck.vfat clean`, async () => {
    const img = randomFile(join(dir, `${name}.img`), size);
    await run('mkfs.vfat', [...mkfs, img]);
    const keep = randomBytes(Math.floor(size / 8) + 333);
    const gone = randomBytes(Math.floor(size / 4));
    writeFatFiles(img, { 'A.BIN': keep, 'GONE.BIN': gone, 'B.TXT': Buffer.from('hello\n') });
    deleteFatFile(img, 'GONE.BIN');
    await run('fsck.vfat', ['-n', img]);
    const image = await sparsify(await openImage(img));
    const out = join(dir, `${name}.out`);
    try {
      const report = await sparsifyReport(image);
      assert.equal(report.partitions[0]!.filesystem, fs);
      assert.equal(report.partitions[0]!.action, 'sparsify');
      assert.ok(report.droppedBytes >= gone.length, `${report.droppedBytes} dropped`);
      await convertImage(image, out);
    } finally {
      await image.close();
    }
    await run('fsck.vfat', ['-n', out]);
    const files = readFatFiles(out);
    assert.ok(files.get('A.BIN')!.equals(keep));
    assert.equal(files.get('B.TXT')!.toString(), 'hello\n');
    assert.equal(files.has('GONE.BIN'), false);
    // Kept: boot sector, FATs, root directory and the two files' clusters (plus rounding).
    const allocated = statSync(out).blocks * 512;
    assert.ok(allocated <= keep.length + 256 * KiB, `${name}: ${allocated} bytes allocated`);
  });
}
