/**
 * qcow2 references to other files: backing chains (qcow2 and raw, shorter backings, probing),
 * external data files, and the trust rule that guards them.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { checkedExtents, readAll } from '../helpers/extents.js';
import { qemuImg, qemuIo, run, sparseFile, tempDir } from '../helpers/peers.js';
import {
  assertSameBytes,
  be32,
  checkAgainstQemu,
  isZero,
  ourMap,
  patch,
  qemuRaw,
} from '../helpers/qemu-compare.js';

const dir = tempDir('diskpipe-qcow2-chain-');
const MiB = 1024 * 1024;

async function create(
  name: string,
  size: number,
  opts: { backing?: string; backingFormat?: string; o?: string } = {},
): Promise<string> {
  const args = ['create', '-q', '-f', 'qcow2'];
  if (opts.backing) args.push('-b', opts.backing, '-F', opts.backingFormat ?? 'qcow2');
  if (opts.o) args.push('-o', opts.o);
  // Run inside the test directory: qemu-img creates a relative data_file there.
  await run('qemu-img', [...args, name, String(size)], { cwd: dir });
  return join(dir, name);
}

test('qcow2 backing chain of 3 layers, each backing shorter than its overlay', async () => {
  await create('base.qcow2', 2 * MiB);
  await qemuIo(join(dir, 'base.qcow2'), ['write -P 0x01 0 1536k', 'write -P 0x0b 2047k 1k']);
  await create('mid.qcow2', 5 * MiB, { backing: 'base.qcow2' });
  await qemuIo(join(dir, 'mid.qcow2'), [
    'write -P 0x02 1M 1M',
    'write -z 256k 128k',
    'discard 512k 64k',
    'write -zu 3M 64k',
    'write -P 0x12 4194000 3000',
  ]);
  const top = await create('top.qcow2', 8 * MiB, { backing: 'mid.qcow2' });
  await qemuIo(top, [
    'write -P 0x03 4194404 10000',
    'write -P 0x13 7M 64k',
    'write -z 1M 64k',
    'write -P 0x23 100 200',
  ]);
  await checkAgainstQemu(top, dir);
  const image = await openImage(top);
  const depths = new Set((await ourMap(image)).map((e) => e.depth));
  assert.deepEqual([...depths].sort(), [0, 1, 2]);
  assert.equal(image.backing?.backing?.format, 'qcow2');
  assert.equal(image.describe?.().backingFilename, 'mid.qcow2');
  assert.equal(image.describe?.().fullBackingFilename, join(dir, 'mid.qcow2'));
  await image.close();
});

test('qcow2 over a raw backing file', async () => {
  const raw = sparseFile(join(dir, 'base.raw'), 3 * MiB);
  await qemuIo(raw, ['write -P 0x31 64k 1M', 'write -P 0x32 2M 100'], 'raw');
  const top = await create('over-raw.qcow2', 6 * MiB, {
    backing: 'base.raw',
    backingFormat: 'raw',
  });
  await qemuIo(top, ['write -P 0x33 512k 64k', 'write -z 1M 4k', 'write -P 0x34 5M 1k']);
  await checkAgainstQemu(top, dir);
});

test('qcow2 over a raw backing whose size is not a multiple of 512', async () => {
  const raw = join(dir, 'odd.raw');
  writeFileSync(raw, Buffer.alloc(3 * MiB + 100, 0x41));
  const top = await create('over-odd.qcow2', 4 * MiB, {
    backing: 'odd.raw',
    backingFormat: 'raw',
  });
  await qemuIo(top, ['write -P 0x42 0 4k']);
  const image = await openImage(top);
  const ours = await readAll(image);
  assertSameBytes(ours, await qemuRaw(top, dir), 'content');
  for (const e of await checkedExtents(image)) {
    if (e.zero) assert.ok(isZero(ours.subarray(e.offset, e.offset + e.length)));
  }
  await image.close();
});

test('qcow2 backing without a format extension is probed', async () => {
  await create('probe-base.qcow2', 2 * MiB);
  await qemuIo(join(dir, 'probe-base.qcow2'), ['write -P 0x51 0 1M']);
  const top = await create('probe-top.qcow2', 2 * MiB, { backing: 'probe-base.qcow2' });
  await qemuIo(top, ['write -P 0x52 64k 64k']);
  // Turn the backing format extension into an unknown one: qemu and diskpipe then probe.
  const head = readFileSync(top).subarray(0, 65536);
  const at = head.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
  assert.ok(at > 0);
  await patch(top, at, be32(0x7e57e57e));
  await checkAgainstQemu(top, dir);
  const image = await openImage(top);
  assert.equal(image.describe?.().backingFormat, undefined);
  assert.equal(image.backing?.format, 'qcow2');
  await image.close();
});

test('qcow2 extended L2 overlay: unallocated subclusters read from the backing', async () => {
  await create('sub-base.qcow2', 4 * MiB);
  await qemuIo(join(dir, 'sub-base.qcow2'), ['write -P 0x61 0 4M']);
  const top = await create('sub-top.qcow2', 4 * MiB, {
    backing: 'sub-base.qcow2',
    o: 'extended_l2=on',
  });
  await qemuIo(top, ['write -P 0x62 4k 2k', 'write -z 70k 2k', 'write -P 0x63 1M 6k']);
  await checkAgainstQemu(top, dir);
});

test('qcow2 v2 overlay with compressed clusters over a v3 backing', async () => {
  await create('c-base.qcow2', 3 * MiB);
  await qemuIo(join(dir, 'c-base.qcow2'), ['write -P 0x71 0 3M']);
  const top = await create('c-top.qcow2', 3 * MiB, { backing: 'c-base.qcow2', o: 'compat=0.10' });
  await qemuIo(top, [
    'write -c -P 0x72 64k 64k',
    'write -c -P 0x73 1M 128k',
    'write -P 0x74 2M 1k',
  ]);
  await checkAgainstQemu(top, dir);
});

test('qcow2 external data file', async () => {
  const path = await create('ext.qcow2', 4 * MiB, { o: `data_file=${join(dir, 'ext.data')}` });
  await qemuIo(path, [
    'write -P 0x81 64k 64k',
    'write -z 1M 64k',
    'write -P 0x82 2M 1000',
    'write -P 0x83 4193792 512',
  ]);
  await checkAgainstQemu(path, dir);
  const image = await openImage(path);
  const d = image.describe!();
  assert.equal(d.dataFile, join(dir, 'ext.data'));
  assert.equal(d.specific?.['data-file'], join(dir, 'ext.data'));
  assert.equal(d.specific?.['data-file-raw'], false);
  await image.close();
});

test('qcow2 external data file with data_file_raw=on', async () => {
  const path = await create('extraw.qcow2', 4 * MiB, {
    o: `data_file=${join(dir, 'extraw.data')},data_file_raw=on`,
  });
  await qemuIo(path, ['write -P 0x91 64k 64k', 'write -z 1M 64k', 'write -P 0x92 3M 5000']);
  await checkAgainstQemu(path, dir);
  const image = await openImage(path);
  assert.equal(image.describe?.().specific?.['data-file-raw'], true);
  await image.close();
});

test('trust: backing outside the image directory is refused unless allowed', async () => {
  const other = join(dir, 'other');
  mkdirSync(other, { recursive: true });
  const sub = join(dir, 'sub');
  mkdirSync(sub, { recursive: true });
  await qemuImg('create', '-q', '-f', 'qcow2', join(other, 'b.qcow2'), '2M');
  await qemuIo(join(other, 'b.qcow2'), ['write -P 0xa1 0 1M']);
  // Relative reference leaving the directory with '..'.
  const rel = join(sub, 'rel.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', '../other/b.qcow2', '-F', 'qcow2', rel, '2M');
  await assert.rejects(openImage(rel), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNTRUSTED_REFERENCE');
    assert.match(err.message, /--allow-backing/);
    return true;
  });
  await checkAgainstQemu(rel, dir, { allowBacking: [other] });
  // Absolute reference elsewhere.
  const abs = join(sub, 'abs.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', join(other, 'b.qcow2'), '-F', 'qcow2', abs);
  await assert.rejects(openImage(abs), { code: 'UNTRUSTED_REFERENCE' });
  await checkAgainstQemu(abs, dir, { allowBacking: [other] });
  // A host file such as /etc/passwd.
  const passwd = join(sub, 'passwd.qcow2');
  await qemuImg(
    'create',
    '-q',
    '-f',
    'qcow2',
    '-u',
    '-b',
    '/etc/passwd',
    '-F',
    'raw',
    passwd,
    '1M',
  );
  await assert.rejects(openImage(passwd), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNTRUSTED_REFERENCE');
    assert.match(err.message, /\/etc\/passwd/);
    return true;
  });
});

test('trust: --untrusted refuses any backing or data file', async () => {
  await create('u-base.qcow2', MiB);
  const top = await create('u-top.qcow2', MiB, { backing: 'u-base.qcow2' });
  await (await openImage(top)).close();
  await assert.rejects(openImage(top, { untrusted: true }), { code: 'UNTRUSTED_REFERENCE' });
  const ext = await create('u-ext.qcow2', MiB, { o: 'data_file=u-ext.data' });
  await (await openImage(ext)).close();
  await assert.rejects(openImage(ext, { untrusted: true }), { code: 'UNTRUSTED_REFERENCE' });
});

test('qcow2 relative data file name is taken from the image directory', async () => {
  // qemu resolves a relative data file name from its working directory; diskpipe from the
  // image's directory, like backing files (and so the same from any working directory).
  const path = await create('rel-data.qcow2', MiB, { o: 'data_file=rel-data.raw' });
  await run('qemu-io', ['-c', 'write -P 0xb1 4k 8k', 'rel-data.qcow2'], { cwd: dir });
  const image = await openImage(path);
  const want = Buffer.alloc(MiB);
  want.fill(0xb1, 4096, 12288);
  assertSameBytes(await readAll(image), want, 'content');
  assert.equal(image.describe?.().dataFile, 'rel-data.raw');
  await image.close();
});

test('trust: external data file outside the directory is refused', async () => {
  const other = tempDir('diskpipe-qcow2-elsewhere-');
  const path = await create('far-data.qcow2', MiB, { o: `data_file=${join(other, 'd.raw')}` });
  await assert.rejects(openImage(path), { code: 'UNTRUSTED_REFERENCE' });
  const image = await openImage(path, { allowBacking: [other] });
  await image.close();
});

test('backing loops and missing or unsupported backings fail clearly', async () => {
  await create('loop-b.qcow2', MiB);
  const a = await create('loop-a.qcow2', MiB, { backing: 'loop-b.qcow2' });
  await qemuImg('rebase', '-u', '-b', 'loop-a.qcow2', '-F', 'qcow2', join(dir, 'loop-b.qcow2'));
  await assert.rejects(openImage(a), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CORRUPT');
    assert.match(err.message, /loops/);
    return true;
  });
  const self = await create('self.qcow2', MiB);
  await qemuImg('rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', self);
  await assert.rejects(openImage(self), /loops/);

  const missing = join(dir, 'missing.qcow2');
  await qemuImg(
    'create',
    '-q',
    '-f',
    'qcow2',
    '-u',
    '-b',
    'nope.qcow2',
    '-F',
    'qcow2',
    missing,
    '1M',
  );
  await assert.rejects(openImage(missing), { code: 'NOT_FOUND' });

  await create('par-base.qcow2', MiB);
  const par = await create('par-top.qcow2', MiB, { backing: 'par-base.qcow2' });
  await qemuImg('rebase', '-u', '-b', 'par-base.qcow2', '-F', 'parallels', par);
  await assert.rejects(openImage(par), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNSUPPORTED');
    assert.match(err.message, /parallels/);
    return true;
  });
});
