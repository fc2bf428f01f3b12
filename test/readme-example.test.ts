/**
 * The README's library example runs as written: its code block is taken from README.md,
 * compiled with TypeScript and run as a program that imports the package by its name. Only
 * the substitutions the README names are made: the URL becomes a local server's and the two
 * paths become temporary directories.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { startServer } from './helpers/http-server.js';
import { diskpipe, qemuImg, qemuIo, tempDir } from './helpers/peers.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MiB = 1024 * 1024;

/** The ```ts block of the README that contains `marker`. */
function readmeBlock(marker: string): string {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  const found = blocks.filter((b) => b.includes(marker));
  assert.equal(found.length, 1, `one README block contains ${marker}`);
  return found[0]!;
}

function replaceOnce(text: string, from: string, to: string): string {
  assert.equal(text.split(from).length, 2, `the example contains ${from} once`);
  return text.replace(from, to);
}

test('README: the DiskCache example (pull, createDisk, abort signal, progress) runs', async () => {
  const dir = tempDir('diskpipe-readme-');
  const server = await startServer();
  after(() => server.close());
  const raw = join(dir, 'cloud.raw');
  await qemuImg('create', '-f', 'raw', raw, '32M');
  await qemuIo(raw, ['write -P 0x42 1M 3M', 'write -P 0x43 20M 1M'], 'raw');
  const qcow2 = join(dir, 'cloud.qcow2');
  await qemuImg('convert', '-O', 'qcow2', raw, qcow2);
  server.files.set('cloud.qcow2', { path: qcow2 });

  let code = readmeBlock('new DiskCache(');
  code = replaceOnce(code, "'https://example.org/cloud.qcow2'", `'${server.url('cloud.qcow2')}'`);
  code = replaceOnce(code, "'/var/cache/my-vm-manager/images'", `'${join(dir, 'cache')}'`);
  const disk = join(dir, 'vm1.raw');
  code = replaceOnce(code, "'/var/lib/vms/vm1.raw'", `'${disk}'`);
  const js = ts.transpileModule(code, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  // Inside the package, so `from 'diskpipe'` resolves to it by name (package self-reference).
  const runDir = join(repo, 'dist', 'readme-example');
  mkdirSync(runDir, { recursive: true });
  const script = join(runDir, `example-${process.pid}.mjs`);
  writeFileSync(script, js);

  const { stdout } = await promisify(execFile)(process.execPath, [script]);
  assert.match(stdout, /^download: \d+ of \d+ bytes$/m);
  assert.match(stdout, /^convert: \d+ of \d+ bytes$/m);
  const digest = diskpipe(['checksum', raw]).stdout.split(' ')[0]!;
  assert.match(stdout, new RegExp(`^${disk}: (reflink|sparse-copy) of ${digest}$`, 'm'));
  assert.match(stdout, new RegExp(`^${digest} 1$`, 'm'));
  assert.equal(statSync(disk).size, 20 * 2 ** 30);
  const data = Buffer.alloc(MiB);
  const fd = openSync(disk, 'r');
  try {
    readSync(fd, data, 0, MiB, MiB);
  } finally {
    closeSync(fd);
  }
  assert.ok(data.equals(Buffer.alloc(MiB, 0x42)));
});
