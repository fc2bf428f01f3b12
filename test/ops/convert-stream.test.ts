/**
 * convert/checksum of raw images inside .xz/.gz/.zst/.bz2 go through in one pass: they work
 * with no usable staging directory (DISKPIPE_TMPDIR points nowhere), give qemu-img's bytes,
 * stay sparse, and hash to the digest of the raw file.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const NO_STAGING = { DISKPIPE_TMPDIR: join(dir, 'no-such-dir') };

async function rawImage(): Promise<string> {
  const path = join(dir, 'disk.raw');
  // An odd size (not a multiple of 512), data runs, a hole in the middle and a zero tail.
  await qemuImg('create', '-f', 'raw', path, '12M');
  await qemuIo(path, ['write -P 0x61 0 1M', 'write -P 0x62 5M 64k', 'write -P 0x63 9M 3k'], 'raw');
  execFileSync('truncate', ['-s', String(12 * 1024 * 1024 + 777), path]);
  return path;
}

const tools: [string, string[]][] = [
  ['xz', ['xz', '-T1', '-c']],
  ['gz', ['gzip', '-c']],
  ['zst', ['zstd', '-q', '-c']],
  ['bz2', ['bzip2', '-c']],
];

test('convert and checksum of compressed raw streams need no staging', async () => {
  const raw = await rawImage();
  const want = diskpipe(['checksum', raw]);
  assert.equal(want.status, 0, want.stderr);
  const digest = want.stdout.split(' ')[0];
  for (const [ext, [cmd, ...args]] of tools) {
    const packed = join(dir, `disk.raw.${ext}`);
    writeFileSync(packed, execFileSync(cmd!, [...args, raw], { maxBuffer: 1 << 26 }));
    const out = join(dir, `out-${ext}.raw`);
    const c = diskpipe(['convert', '-O', 'raw', packed, out], { env: NO_STAGING });
    assert.equal(c.status, 0, `${ext}: ${c.stderr}`);
    assert.equal(statSync(out).size, statSync(raw).size, `${ext}: exact size`);
    await qemuImg('compare', '-f', 'raw', '-F', 'raw', raw, out);
    // As sparse as the source: only the data runs (rounded to 4 KiB blocks) are allocated.
    assert.ok(statSync(out).blocks * 512 <= (1024 + 64 + 4) * 1024, `${ext}: sparse output`);
    const h = diskpipe(['checksum', packed], { env: NO_STAGING });
    assert.equal(h.status, 0, `${ext}: ${h.stderr}`);
    assert.equal(h.stdout.split(' ')[0], digest, `${ext}: digest of the raw content`);
  }
});

test('a truncated compressed stream is an error and leaves no output', async () => {
  const raw = await rawImage();
  const packed = join(dir, 'cut.raw.gz');
  const whole = execFileSync('gzip', ['-c', raw]);
  writeFileSync(packed, whole.subarray(0, whole.length - 40));
  const out = join(dir, 'cut-out.raw');
  const r = diskpipe(['convert', packed, out], { env: NO_STAGING });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^diskpipe: /);
  assert.throws(() => statSync(out), /ENOENT/);
});

test('the built-in zstd decoder verifies frame checksums', async () => {
  const raw = await rawImage();
  // From a pipe, zstd writes no content size: the streaming (fzstd) path decodes the frame.
  const packed = execFileSync('sh', ['-c', `zstd -q -c --check < ${raw}`], { maxBuffer: 1 << 26 });
  const good = join(dir, 'piped.raw.zst');
  writeFileSync(good, packed);
  const js = { ...NO_STAGING, DISKPIPE_NO_ACCEL: '1' };
  const ok = diskpipe(['checksum', good], { env: js });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.split(' ')[0], diskpipe(['checksum', raw]).stdout.split(' ')[0]);
  const bad = join(dir, 'bad-check.raw.zst');
  const flipped = Buffer.from(packed);
  flipped[flipped.length - 2]! ^= 0x01;
  writeFileSync(bad, flipped);
  const r = diskpipe(['checksum', bad], { env: js });
  assert.equal(r.status, 2, r.stdout);
  assert.match(r.stderr, /checksum does not match/);
  const c = diskpipe(['convert', bad, join(dir, 'bad-check.raw')], { env: js });
  assert.equal(c.status, 2);
  assert.match(c.stderr, /checksum does not match/);
});
