/**
 * Startup of `pull`: the modules that run before its request is sent exclude the converter
 * (formats' readers, the decode engine, the copy engine, the content hash) and what pull never
 * uses (disk creation, cache verify, sparsify without --sparsify). They loaded first before
 * (148 modules; 83 now): ~0.3 s of a pull of a small image went by before the request left.
 * The decompressors too: the download's raw check needs only the magic numbers (detect.js);
 * decompress/index.js and its decoders (13 modules, ~35 ms) load with the converter.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { cliModules, MODULE_TRACE, tracedModules } from '../helpers/module-trace.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

const CONVERTER =
  /^(ops\/copy\/|ops\/create|codec\/(?!xxhash64)|filters\/sparsify\/|cache\/(store-raw|overlap|host-order-copy|copy-pass-hash|disks|verify)\.js|ops\/checksum\/|sources\/decompress\/(?!detect\.js))/;

test('the pull command loads without the converter, disk or verify modules (they load later)', () => {
  const command = new URL('../../src/cli/commands/pull.js', import.meta.url).href;
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      MODULE_TRACE,
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(command)})`,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  const loaded = tracedModules(r.stderr);
  assert.ok(loaded.includes('cache/pull.js'), 'the hook sees diskpipe modules');
  assert.ok(loaded.includes('cache/download.js'));
  assert.deepEqual(
    loaded.filter((m) => CONVERTER.test(m)),
    [],
  );
});

test('pull loads the converter when it converts, and sparsify only with --sparsify', async () => {
  const raw = join(dir, 'small.raw');
  await qemuImg('create', '-f', 'raw', raw, '4M');
  await qemuIo(raw, ['write -P 0x5a 1M 64k'], 'raw');
  const qcow2 = join(dir, 'small.qcow2');
  await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
  const plain = cliModules(['pull', '--cache-dir', join(dir, 'cache'), qcow2]);
  assert.equal(plain.status, 0, plain.stderr);
  const loaded = plain.modules;
  assert.ok(loaded.includes('cache/store-raw.js'));
  assert.deepEqual(
    loaded.filter((m) => m.startsWith('filters/sparsify/')),
    [],
  );
  const args = ['pull', '--sparsify', '--cache-dir', join(dir, 'cache2'), qcow2];
  const sparse = cliModules(args);
  assert.equal(sparse.status, 0, sparse.stderr);
  assert.ok(sparse.modules.includes('filters/sparsify/index.js'));
});
