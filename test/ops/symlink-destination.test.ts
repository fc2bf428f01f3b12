/**
 * A destination that is a symlink keeps being a symlink: its target receives the output, as
 * qemu-img convert and cp do (renaming over the link would silently replace it with a file).
 */
import assert from 'node:assert/strict';
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;

test('convert, clone and create write through a symlinked destination', async () => {
  const src = sparseFile(join(dir, 'src.raw'), 4 * MiB);
  await qemuIo(src, ['write -P 0x5a 1M 1M'], 'raw');
  mkdirSync(join(dir, 'data'));
  for (const args of [['convert', src], ['clone', src], ['create']]) {
    const name = args[0] as string;
    const target = join(dir, 'data', `${name}.raw`);
    writeFileSync(target, 'old content');
    const link = join(dir, `${name}-link.raw`);
    symlinkSync(`data/${name}.raw`, link); // relative, resolved from the link's directory
    const r = diskpipe(name === 'create' ? ['create', link, '4M'] : [...args, link]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), `${name}: the link is still a link`);
    assert.equal(readlinkSync(link), `data/${name}.raw`);
    const expected = name === 'create' ? Buffer.alloc(4 * MiB) : readFileSync(src);
    assert.ok(readFileSync(target).equals(expected), `${name}: the target holds the output`);
  }
});

test('a symlink loop is refused with a clear error', () => {
  const a = join(dir, 'loop-a');
  const b = join(dir, 'loop-b');
  symlinkSync(b, a);
  symlinkSync(a, b);
  const r = diskpipe(['create', a, '1M']);
  assert.equal(r.status, 2);
  assert.match(
    r.stderr,
    /^diskpipe: cannot write to .*loop-a: (ELOOP: )?too many levels of symbolic links\n$/,
  );
});
