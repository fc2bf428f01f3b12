import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { checksumImage } from '../../src/ops/checksum/checksum.js';
import { diskpipe, sparseFile, tempDir } from '../helpers/peers.js';
import { materialize, referenceBlkhash, vector } from './checksum-vectors.js';
import { CountingImage } from './util.js';

const dir = tempDir();

function vectorFile(name: string): { path: string; bytes: Buffer; digest: string } {
  const v = vector(name);
  const bytes = materialize(v.segments);
  const path = join(dir, `${name}.img`);
  writeFileSync(path, bytes);
  return { path, bytes, digest: v.digest };
}

test('checksum FILE prints "<hex>  <name>" as blksum', () => {
  const { path, digest } = vectorFile('u_1mib');
  const r = diskpipe(['checksum', path]);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
  assert.equal(r.stdout, `${digest}  ${path}\n`);
});

test('checksum - hashes stdin as a raw stream', () => {
  const { bytes, digest } = vectorFile('mix');
  const r = diskpipe(['checksum', '-'], { input: bytes });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `${digest}  -\n`);
});

test('checksum - < FILE reads the file from fd 0', () => {
  const { path, digest } = vectorFile('full_unaligned');
  const big = join(dir, 'big-stdin.img');
  const data = Buffer.concat([
    randomBytes(9 * 1024 * 1024),
    Buffer.alloc(3 * 65536),
    randomBytes(77),
  ]);
  writeFileSync(big, data);
  const main = new URL('../../src/cli/main.js', import.meta.url).pathname;
  for (const [file, expected] of [
    [path, digest],
    [big, referenceBlkhash(data)],
  ] as const) {
    const fd = openSync(file, 'r');
    try {
      const r = spawnSync(process.execPath, [main, 'checksum', '-'], {
        stdio: [fd, 'pipe', 'pipe'],
      });
      assert.equal(r.stderr.toString(), '');
      assert.equal(r.stdout.toString(), `${expected}  -\n`);
    } finally {
      closeSync(fd);
    }
  }
});

test('several images in order; names printed as given; -p without a terminal draws nothing', () => {
  const a = vectorFile('full');
  const b = vectorFile('full_unaligned');
  const r = diskpipe(['checksum', '-p', a.path, '-', b.path], { input: a.bytes });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout, `${a.digest}  ${a.path}\n${a.digest}  -\n${b.digest}  ${b.path}\n`);
});

test('--json, --digest and --block-size', () => {
  const empty = join(dir, 'empty.img');
  writeFileSync(empty, '');
  const data = randomBytes(70000);
  const odd = join(dir, 'odd.img');
  writeFileSync(odd, data);
  const r = diskpipe(['checksum', '--json', '--digest', 'sha1', '--block-size', '4K', empty, odd]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [
    {
      name: empty,
      digest: vector('empty_sha1').digest,
      algorithm: 'sha1',
      blockSize: 4096,
      size: 0,
    },
    {
      name: odd,
      digest: referenceBlkhash(data, 'sha1', 4096),
      algorithm: 'sha1',
      blockSize: 4096,
      size: 70000,
    },
  ]);
});

test('an odd-size raw file gives the digest of its exact bytes (as blksum < FILE)', () => {
  const data = randomBytes(65536 + 333);
  const path = join(dir, 'odd2.img');
  writeFileSync(path, data);
  const file = diskpipe(['checksum', path]);
  const stdin = diskpipe(['checksum', '-'], { input: data });
  assert.equal(file.stdout.split('  ')[0], referenceBlkhash(data));
  assert.equal(stdin.stdout.split('  ')[0], referenceBlkhash(data));
});

test('a sparse 8 GiB image is hashed without reading its hole', async () => {
  const path = sparseFile(join(dir, 'big.img'), 8 * 1024 ** 3);
  const r = diskpipe(['checksum', path]);
  assert.equal(r.stdout, `${vector('zero_8gib').digest}  ${path}\n`);
  // The same walk in-process, counting the bytes that really go through read().
  const image = new CountingImage(await openImage(path));
  try {
    const sum = await checksumImage(image);
    assert.equal(sum.digest, vector('zero_8gib').digest);
    assert.equal(image.bytesRead, 0);
  } finally {
    await image.close();
  }
});

test('a FIFO or a character device is refused, not hashed as an empty image (and a FIFO without a writer does not hang)', () => {
  const { bytes, digest } = vectorFile('mix');
  const fifo = join(dir, 'pipe');
  execFileSync('mkfifo', [fifo]);
  for (const [path, what] of [
    ['/dev/zero', 'a character device'],
    ['/dev/null', 'a character device'],
    [fifo, 'a FIFO'],
  ] as const) {
    for (const command of [['checksum'], ['info'], ['convert', '-O', 'raw']]) {
      const args = [...command, path];
      if (command[0] === 'convert') args.push(join(dir, 'from-pipe.raw'));
      const r = diskpipe(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
      assert.equal(
        r.stderr,
        `diskpipe: cannot open ${path}: it is ${what}, not an image file or a block device (to read a pipe, give it on stdin as '-')\n`,
      );
    }
  }
  // The way that works: the pipe on stdin.
  const r = diskpipe(['checksum', '-'], { input: bytes });
  assert.equal(r.stdout, `${digest}  -\n`);
});

test('errors: one line, exit status 2', () => {
  const { path } = vectorFile('block_data');
  const cases: [string[], RegExp][] = [
    [['checksum', '--digest', 'nope', path], /^diskpipe: unknown digest 'nope'/],
    [['checksum', '--block-size', '1000', path], /^diskpipe: invalid block size 1000/],
    [['checksum', '--block-size', 'x', path], /^diskpipe: invalid block size 'x'/],
    [['checksum'], /^diskpipe: usage: diskpipe checksum/],
    [['checksum', '-', '-'], /^diskpipe: stdin/],
    [['checksum', join(dir, 'missing.img')], /^diskpipe: cannot open .*missing\.img: ENOENT/],
    [['checksum', '--bogus', path], /^diskpipe: Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
