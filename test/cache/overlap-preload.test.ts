/**
 * The overlapped pull loads the qcow2 reader while its request is out, not once the first
 * bytes name the format: loaded while the body streamed, its 42 modules took 0.2-0.8 s
 * instead of ~30 ms (each read and link waited behind the download on the event loop), and
 * the converter started that far behind the download.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startServer } from '../helpers/http-server.js';
import { MODULE_TRACE, tracedModules } from '../helpers/module-trace.js';
import { diskpipeAsync, qemuImg, tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-overlap-preload-');
const server = await startServer();
after(() => server.close());

test('the converter asks for the qcow2 reader before any byte of the download is in', () => {
  const url = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  // A download that ends before its first byte: the converter never probes a format.
  const script = [
    `const { GrowingFile } = await import(${url('../../src/sources/growing-file.js')});`,
    `const { convertAlongside } = await import(${url('../../src/cache/overlap.js')});`,
    `const growing = new GrowingFile(${JSON.stringify(join(dir, 'x.part'))}, 'x');`,
    `const converting = convertAlongside(growing, ${JSON.stringify(join(dir, 'x.raw'))});`,
    'growing.end();',
    "if ((await converting) !== undefined) throw new Error('converted nothing?');",
  ].join('\n');
  const r = spawnSync(
    process.execPath,
    ['--import', MODULE_TRACE, '--input-type=module', '-e', script],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  const loaded = tracedModules(r.stderr);
  assert.ok(loaded.includes('cache/overlap.js'), 'the hook sees diskpipe modules');
  assert.ok(loaded.includes('formats/qcow2/index.js'), loaded.join(' '));
});

test('pull asks for the qcow2 reader beside the converter, not after its modules', async () => {
  const qcow2 = join(dir, 'small.qcow2');
  await qemuImg('create', '-f', 'qcow2', qcow2, '4M');
  server.files.set('small.qcow2', { path: qcow2 });
  const args = ['pull', '--cache-dir', join(dir, 'cache'), server.url('small.qcow2')];
  const r = await diskpipeAsync(args, { env: { NODE_OPTIONS: `--import=${MODULE_TRACE}` } }).done;
  assert.equal(r.status, 0, r.stderr);
  const loaded = tracedModules(r.stderr);
  const at = (m: string) => loaded.indexOf(m);
  assert.ok(at('cache/overlap.js') >= 0, 'the pull converted alongside');
  assert.ok(at('formats/qcow2/index.js') >= 0);
  // overlap.js is one of the converter's modules: the reader was asked for before them.
  assert.ok(at('formats/qcow2/index.js') < at('cache/overlap.js'), loaded.join(' '));
});
