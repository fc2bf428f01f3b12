/**
 * Startup of `convert`: a raw → raw convert loads none of the modules it does not use — the
 * qcow2 reader and writer (its small header and layout modules aside: probe and option
 * parsing), the vmdk/vhd/vhdx/vdi writers, sparsify, the decompressors (143 modules became
 * 73 when this was written); a qcow2 or .xz source, a qcow2 output still load them on demand.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { cliModules } from '../helpers/module-trace.js';
import { qemuImg, qemuIo, runChecked, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('convert raw → raw loads no qcow2, writer, sparsify or decoder module; they load on demand', async () => {
  const raw = join(dir, 'small.raw');
  await qemuImg('create', '-f', 'raw', raw, '4M');
  await qemuIo(raw, ['write -P 0x5a 1M 64k'], 'raw');
  const r = cliModules(['convert', '-O', 'raw', raw, join(dir, 'out.raw')]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.modules.includes('ops/copy/engine.js'), 'the hook sees diskpipe modules');
  const unused = r.modules.filter((m) =>
    /^(formats\/qcow2\/(?!header\.js|writer\/layout\.js)|formats\/(vmdk|vhd|vhdx|vdi)\/writer|filters\/sparsify\/|sources\/decompress\/(?!detect\.js)|codec\/)/.test(
      m,
    ),
  );
  assert.deepEqual(unused, []);

  const q = cliModules(['convert', '-O', 'qcow2', raw, join(dir, 'out.qcow2')]);
  assert.equal(q.status, 0, q.stderr);
  assert.ok(q.modules.some((m) => m.startsWith('formats/qcow2/writer/')));
  const back = cliModules(['convert', '-O', 'raw', join(dir, 'out.qcow2'), join(dir, 'back.raw')]);
  assert.equal(back.status, 0, back.stderr);
  assert.ok(back.modules.includes('formats/qcow2/index.js'));
  assert.equal(await qemuImg('compare', raw, join(dir, 'back.raw')), 'Images are identical.\n');

  runChecked('xz', ['-k', raw]);
  const xz = cliModules(['convert', '-O', 'raw', `${raw}.xz`, join(dir, 'from-xz.raw')]);
  assert.equal(xz.status, 0, xz.stderr);
  assert.ok(xz.modules.includes('sources/decompress/index.js'));
  assert.equal(await qemuImg('compare', raw, join(dir, 'from-xz.raw')), 'Images are identical.\n');
});
