/**
 * The overlapped pull loads the qcow2 reader while its request is out, not once the first
 * bytes name the format: loaded while the body streamed, its 42 modules took 0.2-0.8 s
 * instead of ~30 ms (each read and link waited behind the download on the event loop), and
 * the converter started that far behind the download.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/peers.js';
import { MODULE_TRACE, tracedModules } from '../helpers/module-trace.js';

const dir = tempDir('diskpipe-overlap-preload-');

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
