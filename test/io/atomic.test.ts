/**
 * Replacing an existing file (create, convert, clone write a temporary and rename it) keeps
 * the file's owner and permission bits, as qemu-img does by truncating it in place.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, runChecked, sparseFile, tempDir } from '../helpers/peers.js';

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

/**
 * The POSIX access ACL of `path` (system.posix_acl_access, hex; '' for none), read or set with
 * python3's os.getxattr/os.setxattr: no setfacl here.
 */
function acl(path: string, set?: string): string {
  const code = set
    ? `import os,sys; os.setxattr(sys.argv[1], 'system.posix_acl_access', bytes.fromhex(sys.argv[2]))`
    : `import os,sys\ntry: print(os.getxattr(sys.argv[1], 'system.posix_acl_access').hex())\nexcept OSError: print('')`;
  return runChecked('python3', ['-c', code, path, ...(set ? [set] : [])]).trim();
}

/** Version 2, then (tag, perm, id) entries: user::rw- user:1000:rw- group::--- mask::rw- other::---. */
const SHARED_WITH_ONE_USER = [
  '02000000',
  '01000600ffffffff',
  '02000600e8030000',
  '04000000ffffffff',
  '10000600ffffffff',
  '20000000ffffffff',
].join('');

// A disk shared with one user through an ACL shows mode 0660 (the group bits are the ACL's
// mask): copying only the mode gave the file's whole group read and write access.
test('convert, create and clone over a file with an access ACL keep the ACL (as qemu-img): its group gets no access', async () => {
  const src = sparseFile(join(dir, 'acl-src.raw'), 4 * 1024 * 1024);
  const peer = existing('acl-peer.img', 0o600);
  acl(peer, SHARED_WITH_ONE_USER);
  assert.equal(access(peer), '660 1234:2345');
  await qemuImg('convert', '-O', 'raw', src, peer);
  assert.equal(acl(peer), SHARED_WITH_ONE_USER, 'qemu-img convert keeps the ACL');
  for (const args of [
    ['convert', '-O', 'qcow2', src],
    ['create', '-f', 'raw'],
    ['clone', src],
  ]) {
    const path = existing('acl-out.img', 0o600);
    acl(path, SHARED_WITH_ONE_USER);
    const r = diskpipe([...args, path, ...(args[0] === 'create' ? ['1M'] : [])]);
    assert.equal(r.status, 0, r.stderr);
    // Before: no ACL and mode 660, so group 2345 could read and write the disk.
    assert.equal(acl(path), SHARED_WITH_ONE_USER, args.join(' '));
    assert.equal(access(path), '660 1234:2345', args.join(' '));
  }
});

const main = new URL('../../src/cli/main.js', import.meta.url).pathname;

/**
 * A directory anyone may write, and who runs there: as root every file is writable, so the
 * run is as nobody (65534); otherwise as the caller.
 */
function sharedDir(name: string): {
  asRoot: boolean;
  as: { uid?: number; gid?: number };
  shared: string;
} {
  const asRoot = process.getuid?.() === 0;
  const shared = join(dir, name);
  mkdirSync(shared, { recursive: true });
  chmodSync(dir, 0o755);
  chmodSync(shared, 0o777);
  return { asRoot, as: asRoot ? { uid: 65534, gid: 65534 } : {}, shared };
}

// A golden disk kept read-only (0444) by its owner, or another user's disk in a shared
// directory: qemu-img cannot open it for writing and refuses ('Permission denied'); the
// rename put a new file in its place and the disk was gone.
test('create, convert and clone over a file the caller cannot write refuse, and leave it as it was (as qemu-img)', async () => {
  const { asRoot, as, shared } = sharedDir('shared');
  const src = sparseFile(join(shared, 'ro-src.raw'), 4 * 1024 * 1024);
  await qemuIo(src, ['write -P 0x33 0 1M'], 'raw');
  chmodSync(src, 0o644);
  const golden = join(shared, 'golden.img');
  const runAs = (args: string[]) =>
    spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', ...as });
  for (const args of [
    ['convert', '-O', 'qcow2', src],
    ['convert', src],
    ['create', '-f', 'raw'],
    ['clone', src],
  ]) {
    writeFileSync(golden, 'precious');
    chmodSync(golden, 0o444);
    if (asRoot) chownSync(golden, 65534, 65534);
    const r = runAs([...args, golden, ...(args[0] === 'create' ? ['1M'] : [])]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^diskpipe: cannot write .*golden\.img: EACCES: permission denied/);
    // Before: exit 0 and the read-only disk replaced.
    assert.equal(readFileSync(golden, 'utf8'), 'precious', args.join(' '));
    assert.equal(
      access(golden),
      `444 ${asRoot ? '65534:65534' : `${process.getuid?.()}:${process.getgid?.()}`}`,
    );
  }
  writeFileSync(golden, 'precious');
  chmodSync(golden, 0o444);
  if (asRoot) chownSync(golden, 65534, 65534);
  const peer = spawnSync('qemu-img', ['convert', '-O', 'raw', src, golden], as);
  assert.equal(peer.status, 1, 'qemu-img refuses too');
  assert.equal(readFileSync(golden, 'utf8'), 'precious');
});

// qemu-img writing a set-id file it owns (no CAP_FSETID) has the kernel drop the set-id
// bits: new content must not run with the old file's privileges. Root keeps them (as qemu-img).
test('convert over a set-id file as its (unprivileged) owner clears set-uid and set-gid, as the kernel does for qemu-img', async () => {
  const { asRoot, as, shared } = sharedDir('setid');
  const src = sparseFile(join(shared, 'src.raw'), 1024 * 1024);
  chmodSync(src, 0o644);
  const owned = (name: string, mode: number) => {
    const path = join(shared, name);
    writeFileSync(path, 'old');
    if (asRoot) chownSync(path, 65534, 65534);
    chmodSync(path, mode);
    return path;
  };
  const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);
  for (const [before, after] of [
    [0o4755, '755'],
    [0o6755, '755'],
    [0o2770, '770'],
    [0o2660, '2660'], // set-gid without group execute is no privilege: kept
  ] as const) {
    const peer = owned(`peer-${before.toString(8)}.img`, before);
    assert.equal(spawnSync('qemu-img', ['convert', '-O', 'raw', src, peer], as).status, 0);
    assert.equal(mode(peer), after, `qemu-img over ${before.toString(8)}`);
    const path = owned(`out-${before.toString(8)}.img`, before);
    const r = spawnSync(process.execPath, [main, 'convert', '-O', 'raw', src, path], {
      encoding: 'utf8',
      ...as,
    });
    assert.equal(r.status, 0, r.stderr);
    // Before: 4755 and 6755 kept, so the new content ran set-uid.
    assert.equal(mode(path), after, `diskpipe over ${before.toString(8)}`);
  }
});
