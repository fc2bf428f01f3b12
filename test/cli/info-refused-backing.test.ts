/**
 * `info` of a local image whose backing file, data file or vmdk extent lies outside the trusted
 * directories prints the image and names the refused reference (DESIGN, trust rule); commands
 * that read data refuse.
 */
import assert from 'node:assert/strict';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, tempDir } from '../helpers/peers.js';

test('info names a backing file outside the trusted directories; convert and map refuse', async () => {
  const elsewhere = tempDir('diskpipe-elsewhere-');
  const dir = tempDir();
  const base = join(elsewhere, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '1M');
  mkdirSync(join(dir, 'vm'));
  const top = join(dir, 'vm', 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);

  const human = diskpipe(['info', top]);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`backing file: ${base}\\n  \\(not opened: .*outside`));
  const json = diskpipe(['info', '--output=json', top]);
  assert.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.equal(parsed['backing-filename'], base);
  assert.match(String(parsed['backing-refused']), /--allow-backing/);
  assert.equal(diskpipe(['info', '--backing-chain', top]).status, 0);

  for (const args of [
    ['convert', top, join(dir, 'out.raw')],
    ['map', top],
    ['checksum', top],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^diskpipe: backing file .* is outside/);
  }
  // Allowed, the chain opens and info shows no refusal.
  const allowed = diskpipe(['info', '--json', '--allow-backing', elsewhere, top]);
  assert.equal(allowed.status, 0, allowed.stderr);
  assert.equal(JSON.parse(allowed.stdout)['backing-refused'], undefined);
});

// A vmdk extent and a qcow2 data file are references too: info exited 2 ('extent file … is
// outside …') where a refused backing file was shown.
test('info names a vmdk extent and a qcow2 data file outside the trusted directories; convert refuses', async () => {
  const elsewhere = tempDir('diskpipe-elsewhere-');
  const dir = tempDir();
  const flat = join(elsewhere, 'flat.raw');
  writeFileSync(flat, '');
  truncateSync(flat, 1024 * 1024);
  const vmdk = join(dir, 'evil.vmdk');
  writeFileSync(
    vmdk,
    [
      '# Disk DescriptorFile',
      'version=1',
      'CID=fffffffe',
      'parentCID=ffffffff',
      'createType="monolithicFlat"',
      `RW 2048 FLAT "${flat}" 0`,
      '',
    ].join('\n'),
  );
  const qcow2 = join(dir, 'external.qcow2');
  await qemuImg(
    'create',
    '-f',
    'qcow2',
    '-o',
    `data_file=${join(elsewhere, 'data.raw')}`,
    qcow2,
    '1M',
  );

  for (const [image, kind] of [
    [vmdk, 'extent file'],
    [qcow2, 'data file'],
  ] as const) {
    const human = diskpipe(['info', image]);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`\\(not opened: ${kind} '.*' is outside`));
    const json = diskpipe(['info', '--output=json', image]);
    assert.equal(json.status, 0, json.stderr);
    const refused = JSON.parse(json.stdout)['files-refused'] as string[];
    assert.equal(refused.length, 1);
    assert.match(refused[0]!, /--allow-backing/);
    const r = diskpipe(['convert', '-O', 'raw', image, join(dir, 'out.raw')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, new RegExp(`^diskpipe: ${kind} .* is outside`));
    const allowed = diskpipe(['info', '--json', '--allow-backing', elsewhere, image]);
    assert.equal(allowed.status, 0, allowed.stderr);
    assert.equal(JSON.parse(allowed.stdout)['files-refused'], undefined);
  }
});
