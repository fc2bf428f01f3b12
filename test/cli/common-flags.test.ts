import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { outputAsJson, splitCommand } from '../../src/cli/argv.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('common flags before the command move after it; the command name is found', () => {
  assert.deepEqual(splitCommand(['--untrusted', '--allow-backing', '/a', 'info', 'x']), {
    name: 'info',
    args: ['x', '--untrusted', '--allow-backing', '/a'],
  });
  assert.deepEqual(splitCommand(['--cache-dir=/c', '-q', 'cache', 'ls']), {
    name: 'cache',
    args: ['ls', '--cache-dir=/c', '-q'],
  });
  assert.deepEqual(splitCommand(['--output=json', 'check', 'x']), {
    name: 'check',
    args: ['x', '--json'],
  });
  assert.deepEqual(splitCommand(['info', '-f', 'raw', 'x']).args, ['-f', 'raw', 'x']);
  assert.deepEqual(splitCommand(['-q', 'resize', 'x', '--', '-1G']).args, ['x', '-q', '--', '-1G']);
  assert.equal(splitCommand([]).name, undefined);
  assert.throws(() => splitCommand(['--cache-dir']), /needs a value/);
  // The leading flags are the trust rule's and -q/--quiet, as the commands define them.
  assert.deepEqual(splitCommand(['--quiet', '--untrusted', 'map', 'x']).args, [
    'x',
    '--quiet',
    '--untrusted',
  ]);
  // A command name that is an Object property is a command name, not a flag needing a value.
  assert.deepEqual(splitCommand(['constructor', 'x']), { name: 'constructor', args: ['x'] });
  assert.deepEqual(splitCommand(['toString']), { name: 'toString', args: [] });
});

test('--output=json and --output json mean --json; --output=human is the default', () => {
  assert.deepEqual(outputAsJson(['--output=json', 'a']), ['--json', 'a']);
  assert.deepEqual(outputAsJson(['--output', 'json', 'a']), ['--json', 'a']);
  assert.deepEqual(outputAsJson(['--output=human', 'a']), ['a']);
  assert.deepEqual(outputAsJson(['--output=xml']), ['--output=xml']);
  assert.deepEqual(outputAsJson(['--', '--output=json']), ['--', '--output=json']);
});

test('--output=json works for info, map, measure and check as --json does', async () => {
  const q = join(dir, 'x.qcow2');
  await qemuImg('create', '-f', 'qcow2', q, '4M');
  await qemuIo(q, ['write 0 64k']);
  for (const cmd of [['info'], ['map'], ['measure', '-O', 'qcow2'], ['check']]) {
    const json = diskpipe([...cmd, '--json', q]);
    assert.equal(json.status, 0, json.stderr);
    for (const form of [['--output=json'], ['--output', 'json']]) {
      assert.equal(diskpipe([...cmd, ...form, q]).stdout, json.stdout, cmd.join(' '));
      assert.equal(diskpipe([...form, ...cmd, q]).stdout, json.stdout, cmd.join(' '));
    }
  }
  const bad = diskpipe(['info', '--output=xml', q]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^diskpipe: .*--output/);
});

test('--allow-backing and --cache-dir work before the command as after it', async () => {
  const elsewhere = join(dir, 'elsewhere');
  const images = join(dir, 'images');
  mkdirSync(elsewhere);
  mkdirSync(images);
  const base = join(elsewhere, 'base.qcow2');
  await qemuImg('create', '-f', 'qcow2', base, '1M');
  const top = join(images, 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  const after = diskpipe(['checksum', top, '--allow-backing', elsewhere]);
  assert.equal(after.status, 0, after.stderr);
  const before = diskpipe(['--allow-backing', elsewhere, 'checksum', top]);
  assert.equal(before.stdout, after.stdout);
  assert.equal(diskpipe(['checksum', top]).status, 2); // outside the trusted directories
  const cacheDir = join(dir, 'cache');
  const ls = diskpipe(['--cache-dir', cacheDir, 'cache', 'ls', '--json']);
  assert.equal(ls.status, 0, ls.stderr);
  assert.equal(ls.stdout.trim(), '[]');
});

test('-q silences the output of any command, before or after it', async () => {
  const raw = join(dir, 'quiet.img');
  for (const args of [
    ['-q', 'create', raw, '1M'],
    ['create', '-q', raw, '1M'],
    ['-q', 'resize', raw, '2M'],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '', args.join(' '));
  }
  assert.match(diskpipe(['create', raw, '1M']).stdout, /^Formatting/);
});
