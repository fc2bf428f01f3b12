/**
 * Replacing an existing file (create, convert, clone write a temporary and rename it) keeps
 * the file's owner and permission bits, as qemu-img does by truncating it in place.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();

/** An existing file with another owner (tests run as root in CI) and `mode`. */
function existing(name: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, 'precious');
  chownSync(path, 1234, 2345);
  chmodSync(path, mode);
  return path;
}

function access(path: string): string {
  const st = statSync(path);
  return `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
}

test('create, convert and clone over an existing file keep its owner and mode (as qemu-img)', async () => {
  const src = sparseFile(join(dir, 'src.raw'), 4 * 1024 * 1024);
  await qemuIo(src, ['write -P 0x5a 0 1M'], 'raw');
  const peer = existing('peer.img', 0o600);
  await qemuImg('convert', '-O', 'qcow2', src, peer);
  assert.equal(access(peer), '600 1234:2345', 'qemu-img convert');
  for (const mode of [0o600, 0o640, 0o444]) {
    for (const args of [
      ['create', '-f', 'qcow2'],
      ['create', '-f', 'raw'],
      ['convert', '-O', 'qcow2', src],
      ['convert', src],
      ['clone', src],
    ]) {
      const path = existing('out.img', mode);
      const r = diskpipe([...args, path, ...(args[0] === 'create' ? ['1M'] : [])]);
      assert.equal(r.status, 0, r.stderr);
      // Before: 644 0:0 (the temporary file's), so a private disk became world-readable.
      const what = `${args.join(' ')} over a ${mode.toString(8)} file`;
      assert.equal(access(path), `${mode.toString(8)} 1234:2345`, what);
    }
  }
});
