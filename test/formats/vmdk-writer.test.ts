/**
 * convert -O vmdk (monolithicSparse and streamOptimized) and create -f vmdk, checked against
 * qemu-img (see writer-checks.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskpipeError } from '../../src/errors.js';
import { VmdkStreamWriter } from '../../src/formats/vmdk/writer/index.js';
import { LocalFile } from '../../src/io/file.js';
import { diskpipe, qemuImg } from '../helpers/peers.js';
import { checkConversion, checkCreate, checksumOf, makeSources, ok } from './writer-checks.js';

const setup = makeSources();

test('convert -O vmdk (monolithicSparse): check, compare, sparseness, read back', async () => {
  const { dir, sources } = await setup;
  for (const src of sources) await checkConversion(dir, src, { format: 'vmdk', check: true });
});

test('convert -O vmdk -o subformat=streamOptimized: check, compare, read back', async () => {
  const { dir, sources } = await setup;
  const c = { format: 'vmdk', options: 'subformat=streamOptimized', check: true } as const;
  for (const src of sources) await checkConversion(dir, src, c);
});

test('streamOptimized is written front to back: grains, tables, directory, footer, end marker', async () => {
  const { dir, sources } = await setup;
  const out = join(dir, 'layout.vmdk');
  ok(['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', sources[0]!.path, out]);
  const f = readFileSync(out);
  assert.equal(f.readBigUInt64LE(56), 0xffffffffffffffffn, 'header: directory at the end');
  const eos = f.subarray(f.length - 512);
  assert.ok(
    eos.every((b) => b === 0),
    'end-of-stream marker',
  );
  assert.equal(f.readUInt32LE(f.length - 1536 + 12), 3, 'footer marker');
  const footerGd = Number(f.readBigUInt64LE(f.length - 1024 + 56));
  assert.ok(footerGd * 512 < f.length - 1536, 'the footer locates the directory');
  const desc = f.subarray(512, 512 * 21).toString('latin1');
  assert.match(desc, /createType="streamOptimized"/);
  assert.match(desc, /RW \d+ SPARSE "layout\.vmdk"/, 'the extent names the final file');
  const info = JSON.parse(await qemuImg('info', '--output=json', out));
  assert.equal(info['format-specific'].data['create-type'], 'streamOptimized');
});

test('create -f vmdk: empty images of SIZE, both subformats', async () => {
  const { dir } = await setup;
  for (const size of ['1M', '1000000', '5G']) {
    await checkCreate(dir, { format: 'vmdk', check: true }, size);
    const stream = { format: 'vmdk', options: 'subformat=streamOptimized', check: true } as const;
    await checkCreate(dir, stream, size);
  }
});

test('vmdk: an unknown subformat is a usage error', async () => {
  const { dir, sources } = await setup;
  const r = diskpipe([
    'convert',
    '-O',
    'vmdk',
    '-o',
    'subformat=twoGbMaxExtentSparse',
    sources[0]!.path,
    join(dir, 'bad.vmdk'),
  ]);
  assert.equal(r.status, 2);
  assert.match(
    r.stderr,
    /subformat=twoGbMaxExtentSparse: expected monolithicSparse or streamOptimized/,
  );
});

test('the streamOptimized writer refuses writes out of offset order (it cannot seek back)', async () => {
  const { dir } = await setup;
  const file = await LocalFile.open(join(dir, 'order.vmdk'), 'w+');
  const w = await VmdkStreamWriter.create(file, { size: 4 * 1024 * 1024, fileName: 'order.vmdk' });
  await w.write(Buffer.alloc(4096, 1), 0);
  await assert.rejects(w.write(Buffer.alloc(4096, 2), 1024 * 1024), (err: unknown) => {
    assert.ok(err instanceof DiskpipeError);
    assert.match(err.message, /written in order \(expected offset 4096, got 1048576\)/);
    return true;
  });
  await w.zero(4096, 4 * 1024 * 1024 - 4096);
  await w.close();
  await qemuImg('check', '-q', join(dir, 'order.vmdk'));
});

test('convert -O vmdk -o subformat=streamOptimized SRC -: the vmdk goes to stdout, front to back', async () => {
  const { dir, sources } = await setup;
  for (const src of sources) {
    const out = join(dir, `piped-${src.name.replace(/\W+/g, '-')}.vmdk`);
    const fd = openSync(out, 'w');
    const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
    const args = ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src.path, '-'];
    const r = spawnSync(process.execPath, [main, ...args], { stdio: ['ignore', fd, 'pipe'] });
    closeSync(fd);
    assert.equal(r.status, 0, r.stderr.toString());
    await qemuImg('check', '-q', out);
    assert.match(await qemuImg('compare', '-f', src.format, src.path, out), /identical/);
    const file = join(dir, `${src.name.replace(/\W+/g, '-')}-vmdk-subformat-streamOptimized.vmdk`);
    assert.equal(checksumOf(out), checksumOf(file), 'the same content as the file output');
  }
  const sparse = diskpipe(['convert', '-O', 'vmdk', sources[0]!.path, '-']);
  assert.equal(sparse.status, 2);
  assert.match(
    sparse.stderr,
    /only raw or streamOptimized vmdk output .* can be written to stdout/,
  );
});
