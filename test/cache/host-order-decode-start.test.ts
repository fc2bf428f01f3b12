/**
 * A host-order copy starts the decode pool's workers as soon as its plan shows compressed
 * clusters, not on the first batch: during a pull they took 0.2-0.5 s to load, and the
 * first batches waited for them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MODULE_TRACE, tracedModules } from '../helpers/module-trace.js';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const MiB = 1024 * 1024;
const dir = tempDir('diskpipe-decode-start-');

/** Runs a host-order copy of `image` whose data reads all fail; returns the modules loaded. */
function copyWithoutReads(image: string): string[] {
  const url = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const script = [
    `const { openImage } = await import(${url('../../src/open.js')});`,
    `const { LocalFile } = await import(${url('../../src/io/file.js')});`,
    `const { CopyPassHash } = await import(${url('../../src/cache/copy-pass-hash.js')});`,
    `const { copyInHostOrder } = await import(${url('../../src/cache/host-order-copy.js')});`,
    `const { closeDecodePool } = await import(${url('../../src/codec/pool.js')});`,
    `const image = await openImage(${JSON.stringify(image)});`,
    // Plans from the real map; no cluster is ever read, so no batch is ever decoded.
    'const unread = { size: image.size, mapping: (s, l) => image.mapping(s, l),',
    "  read: async () => { throw new Error('not read'); } };",
    `const file = await LocalFile.open(${JSON.stringify(join(dir, 'out.raw'))}, 'w+');`,
    'const hash = new CopyPassHash(image.size);',
    "await copyInHostOrder(unread, file, hash).then(() => { throw new Error('copied?'); },",
    "  (err) => { if (err.message !== 'not read') throw err; });",
    'await file.close();',
    'await image.close();',
    // Waits for started workers to load their modules (the trace then names them).
    'await closeDecodePool();',
    'process.exit(0);',
  ].join('\n');
  // A file, not -e: workers inherit --input-type=module, which they refuse.
  const path = join(dir, 'copy.mjs');
  writeFileSync(path, script);
  const r = spawnSync(process.execPath, ['--import', MODULE_TRACE, path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return tracedModules(r.stderr);
}

const raw = join(dir, 'disk.raw');
await qemuImg('create', '-f', 'raw', raw, '16M');
const text = join(dir, 'text');
writeFileSync(text, randomBytes(3 * MiB).toString('base64'));
await qemuIo(raw, [`write -s ${text} 1M 4M`], 'raw');

test('host-order copy: a plan with compressed clusters starts the decode workers', async () => {
  const qcow2 = join(dir, 'compressed.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', raw, qcow2);
  const loaded = copyWithoutReads(qcow2);
  assert.ok(loaded.includes('cache/host-order-copy.js'), 'the hook sees diskpipe modules');
  assert.ok(loaded.includes('codec/worker.js'), loaded.join(' '));
});

test('host-order copy: an image without compressed clusters starts no decode worker', async () => {
  const qcow2 = join(dir, 'plain.qcow2');
  await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
  const loaded = copyWithoutReads(qcow2);
  assert.ok(loaded.includes('cache/host-order-copy.js'));
  assert.ok(!loaded.includes('codec/worker.js'), loaded.join(' '));
});
