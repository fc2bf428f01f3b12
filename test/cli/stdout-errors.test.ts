import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const main = new URL('../../src/cli/main.js', import.meta.url).pathname;

/** Runs the CLI with stdout on /dev/full (every write fails with ENOSPC, as on a full disk). */
function toFullDevice(args: string[]) {
  const full = openSync('/dev/full', 'w');
  const errPath = join(dir, `err-${args[0]}.log`);
  const err = openSync(errPath, 'w');
  try {
    const r = spawnSync(process.execPath, [main, ...args], { stdio: ['ignore', full, err] });
    return { status: r.status, stderr: readFileSync(errPath, 'utf8') };
  } finally {
    closeSync(full);
    closeSync(err);
  }
}

// `diskpipe info --json x > out.json` on a full filesystem: the output is lost, so the exit
// status must not say success (a script would go on with an empty or cut JSON file).
test('output that cannot be written (stdout on a full device) is an error, exit 2, said on stderr', async () => {
  const image = join(dir, 'a.qcow2');
  await qemuImg('create', '-f', 'qcow2', image, '8M');
  await qemuIo(image, ['write -P 7 0 1M']);
  for (const args of [
    ['info', '--json', image],
    ['map', '--json', image],
    ['checksum', image],
  ]) {
    const r = toFullDevice(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^diskpipe: cannot write the output \(standard output\): .*ENOSPC/m);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

// check exits as qemu-img check: 2 would say the image is corrupt.
test('check whose report cannot be written exits 1 (not completed), not 2 (corrupt)', async () => {
  const image = join(dir, 'clean.qcow2');
  await qemuImg('create', '-f', 'qcow2', image, '8M');
  const r = toFullDevice(['check', image]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^diskpipe: cannot write the output \(standard output\): .*ENOSPC/m);
});

// An error message that cannot be written (stderr on a full disk, `>/dev/full 2>&1`) must not
// turn the status into another answer: 1 is compare's 'different', check's 'not completed'.
test('an error whose message cannot be written (stderr on a full device) still exits 2', async () => {
  const image = join(dir, 'b.qcow2');
  await qemuImg('create', '-f', 'qcow2', image, '8M');
  const full = openSync('/dev/full', 'w');
  try {
    for (const args of [
      ['compare', image, join(dir, 'missing.qcow2')],
      ['info', join(dir, 'missing.qcow2')],
    ]) {
      const r = spawnSync(process.execPath, [main, ...args], { stdio: ['ignore', full, full] });
      assert.equal(r.status, 2, args.join(' '));
    }
  } finally {
    closeSync(full);
  }
});
