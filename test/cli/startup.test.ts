/**
 * Startup: a command on a local image loads only what it uses. `info` and `map` of a small
 * qcow2 load neither the native layer (koffi) nor the HTTP client; flags that need more
 * (--sparsify) still load it on demand, and errors stay one line. `--version` loads nothing
 * but what prints it.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, runChecked, tempDir } from '../helpers/peers.js';

const dir = tempDir();

/** Preloaded into the CLI: at exit, prints the packages it required and Node's built-ins. */
const PRELOAD = `data:text/javascript,${encodeURIComponent(
  [
    "import Module from 'node:module';",
    'const required = [];',
    'const load = Module._load;',
    'Module._load = function (id, ...rest) { required.push(id); return load.call(this, id, ...rest); };',
    "process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify({ required,",
    "  builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)) }) + '\\n'));",
  ].join('\n'),
)}`;

function loadedBy(args: string[]) {
  const r = diskpipe(args, { env: { NODE_OPTIONS: `--import=${PRELOAD}` } });
  const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  assert.ok(line, `no module report: ${r.stderr}`);
  const loaded = JSON.parse(line.slice(7)) as { required: string[]; builtins: string[] };
  return { ...r, ...loaded };
}

test('info and map of a local qcow2 load neither koffi nor the HTTP client', async () => {
  const path = join(dir, 'small.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '16M');
  await qemuIo(path, ['write -P 0x5a 1M 64k'], 'qcow2');
  for (const args of [
    ['info', path],
    ['info', '--output=json', path],
    ['map', path],
  ]) {
    const r = loadedBy(args);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!r.required.includes('koffi'), `${args[0]} loaded koffi`);
    for (const m of ['http', 'https']) assert.ok(!r.builtins.includes(m), `${args[0]} loaded ${m}`);
  }
  // Options that need more load it when asked.
  const sparsify = diskpipe(['info', '--sparsify', path]);
  assert.equal(sparsify.status, 0, sparsify.stderr);
  assert.match(sparsify.stdout, /sparsify: /);
  const mapSparsify = diskpipe(['map', '--sparsify', path]);
  assert.equal(mapSparsify.status, 0, mapSparsify.stderr);
  assert.match(mapSparsify.stdout, /sparsify: /);
});

/**
 * The CLI's own modules (ESM, through a resolve hook appending each URL to a file) and the
 * packages it requires (CJS: koffi loads through createRequire), for one run.
 */
function modulesOf(args: string[]) {
  const log = join(dir, `modules-${Math.random().toString(36).slice(2)}.log`);
  writeFileSync(log, '');
  const hooks = join(dir, 'record-resolve.mjs');
  writeFileSync(
    hooks,
    [
      "import { appendFileSync } from 'node:fs';",
      'export async function resolve(specifier, context, next) {',
      '  const r = await next(specifier, context);',
      "  appendFileSync(process.env.DISKPIPE_TEST_MODULE_LOG, r.url + '\\n');",
      '  return r;',
      '}',
    ].join('\n'),
  );
  const register = join(dir, 'register-resolve.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hooks}`)});\n`,
  );
  const r = diskpipe(args, {
    env: {
      NODE_OPTIONS: `--import=${register} --import=${PRELOAD}`,
      DISKPIPE_TEST_MODULE_LOG: log,
    },
  });
  const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  assert.ok(line, `no module report: ${r.stderr}`);
  const src = new URL('../../src/', import.meta.url).href;
  const own = [
    ...new Set(
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((u) => u.startsWith(src))
        .map((u) => u.slice(src.length)),
    ),
  ].sort();
  const { required } = JSON.parse(line.slice(7)) as { required: string[] };
  return { ...r, own, required };
}

test('--version loads only what prints the version: no koffi, no format driver', () => {
  for (const args of [['--version'], ['-V']]) {
    const v = modulesOf(args);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^diskpipe \d+\.\d+\.\d+\S* \(node \S+\)\n$/);
    assert.deepEqual(v.required, [], `${args[0]} required packages`);
    assert.deepEqual(v.own, ['cli/main.js', 'cli/version.js', 'io/cleanup.js']);
  }
  // --verbose names the system-call layer, and loads it for that.
  const verbose = modulesOf(['--version', '--verbose']);
  assert.equal(verbose.status, 0, verbose.stderr);
  assert.match(verbose.stdout, /^diskpipe \S+ \(node \S+; system calls: .+\)\n$/);
  assert.ok(verbose.required.includes('koffi'));
});

test('errors stay one line', () => {
  const e = diskpipe(['info', join(dir, 'missing.qcow2')]);
  assert.equal(e.status, 2);
  assert.match(e.stderr, /^diskpipe: [^\n]+\n$/);
  const http = diskpipe(['info', 'http://127.0.0.1:1/x.qcow2']);
  assert.equal(http.status, 2);
  assert.match(http.stderr, /^diskpipe: [^\n]+\n$/);
});

test('a plain local qcow2 or raw loads no codec, qcow2 writer, tar reader, stager or sparsify; they load on demand', async () => {
  const path = join(dir, 'plain.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '4M');
  await qemuIo(path, ['write -P 0x5a 1M 64k'], 'qcow2');
  const raw = join(dir, 'plain.raw');
  await qemuImg('convert', '-O', 'raw', path, raw);
  const unused =
    /^(codec\/|formats\/qcow2\/(writable\/|compressed)|sources\/(tar|stage|stage-limit)\.js|filters\/sparsify\/)/;
  for (const args of [
    ['info', path],
    ['map', path],
    ['checksum', raw],
    ['checksum', path],
  ]) {
    const r = modulesOf(args);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.own.includes('formats/registry.js'), 'the hook sees diskpipe modules');
    assert.deepEqual(
      r.own.filter((m) => unused.test(m)),
      [],
      args.join(' '),
    );
  }
  // A compressed qcow2, an archive, --sparsify: each loads what it needs and gives qemu's answer.
  const packed = join(dir, 'packed.qcow2');
  await qemuImg('convert', '-c', '-O', 'qcow2', path, packed);
  const back = join(dir, 'packed.raw');
  const c = modulesOf(['convert', '-O', 'raw', packed, back]);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(c.own.includes('formats/qcow2/compressed-reader.js'));
  assert.equal(await qemuImg('compare', raw, back), 'Images are identical.\n');
  const tar = join(dir, 'plain.tar');
  runChecked('tar', ['-cf', tar, '-C', dir, 'plain.qcow2']);
  const t = modulesOf(['checksum', tar]);
  assert.equal(t.status, 0, t.stderr);
  assert.ok(t.own.includes('sources/tar.js'));
  assert.equal(t.stdout.split(' ')[0], diskpipe(['checksum', path]).stdout.split(' ')[0]);
  const s = modulesOf(['checksum', '--sparsify', raw]);
  assert.equal(s.status, 0, s.stderr);
  assert.ok(s.own.includes('filters/sparsify/index.js'));
});

test('convert and compare of a small qcow2 do not load koffi to align their buffers; the output is exact', async () => {
  const path = join(dir, 'small-convert.qcow2');
  await qemuImg('create', '-f', 'qcow2', path, '16M');
  await qemuIo(path, ['write -P 0x5a 1M 64k'], 'qcow2');
  const out = join(dir, 'small-convert.raw');
  const r = loadedBy(['convert', '-O', 'raw', path, out]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!r.required.includes('koffi'), 'convert loaded koffi');
  assert.equal(await qemuImg('compare', path, out), 'Images are identical.\n');
  const c = loadedBy(['compare', path, path]);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(!c.required.includes('koffi'), 'compare loaded koffi');
});
