import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, settleAllocation, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('map --json prints exactly what qemu-img map prints for a raw file', async () => {
  const path = sparseFile(join(dir, 'a.raw'), 8 << 20);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(65536, 1), 0, 65536, 3 << 20);
  closeSync(fd);
  const ours = diskpipe(['map', '--json', path]);
  assert.equal(ours.status, 0, ours.stderr);
  assert.equal(
    ours.stdout.trim(),
    (await qemuImg('map', '--output=json', '-f', 'raw', path)).trim(),
  );
});

test('info --json uses qemu-img field names', async () => {
  const path = settleAllocation(sparseFile(join(dir, 'b.raw'), 1000));
  const ours = JSON.parse(diskpipe(['info', '--json', path]).stdout);
  const theirs = JSON.parse(await qemuImg('info', '--output=json', '-f', 'raw', path));
  assert.equal(ours.format, theirs.format);
  assert.equal(ours['actual-size'], theirs['actual-size']);
  assert.equal(ours['dirty-flag'], theirs['dirty-flag']);
  // qemu rounds a raw file up to 512 bytes; diskpipe reports its exact size (DESIGN.md).
  assert.equal(theirs['virtual-size'], 1024);
  assert.equal(ours['virtual-size'], 1000);
});

test('errors are one line on stderr with exit status 2', () => {
  const missing = diskpipe(['info', join(dir, 'missing.img')]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^diskpipe: cannot open .*missing\.img: ENOENT/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  const usage = diskpipe(['map', '--bogus', 'x']);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /^diskpipe: Unknown option '--bogus'/);
  assert.equal(diskpipe(['nosuchcommand']).status, 2);
  assert.equal(diskpipe(['info']).status, 2);
});

test('--version and --help', () => {
  assert.match(diskpipe(['--version']).stdout, /^diskpipe \d+\.\d+\.\d+/);
  const help = diskpipe(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /diskpipe info/);
  assert.match(diskpipe(['map', '--help']).stdout, /usage: diskpipe map/);
});
