/**
 * Error messages name the destination the user gave, never the internal temporary file
 * (`.x.raw.diskpipe-5109-….tmp`) (issue 10, item 9); no temporary file is left behind.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskpipe, qemuIo, sparseFile, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const MiB = 1024 * 1024;
const TEMP_NAME = /\.diskpipe-\d+-[0-9a-f]+\.tmp/;
const main = new URL('../../src/cli/main.js', import.meta.url).pathname;

async function source(): Promise<string> {
  const src = sparseFile(join(dir, 'src.raw'), 8 * MiB);
  await qemuIo(src, ['write -P 0x5a 0 3M'], 'raw');
  return src;
}

test('a destination in a missing directory: the error names DST', async () => {
  const src = await source();
  const dst = join(dir, 'no-such-dir', 'x.raw');
  for (const args of [
    ['convert', src, dst],
    ['convert', '-O', 'qcow2', src, dst],
    ['clone', src, dst],
    ['create', dst, '1M'],
  ]) {
    const r = diskpipe(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr, `diskpipe: cannot open ${dst}: ENOENT: no such file or directory\n`);
  }
});

test('EFBIG (ulimit -f): the error names DST as given, nothing left behind', async () => {
  const src = await source();
  const out = join(dir, 'efbig');
  mkdirSync(out);
  // A 1 MiB file size limit in a child shell; Node ignores SIGXFSZ, so calls fail with EFBIG.
  const limited = (args: string[]) =>
    spawnSync('sh', ['-c', 'ulimit -f 1024; exec "$@"', 'sh', process.execPath, main, ...args], {
      cwd: out,
      encoding: 'utf8',
    });
  const cases: [string[], RegExp][] = [
    [['convert', src, 'big.raw'], /^diskpipe: cannot resize big\.raw: EFBIG: file too large\n$/],
    [['clone', '--no-reflink', src, 'big.raw'], /^diskpipe: cannot resize big\.raw: EFBIG/],
    [['create', 'big.raw', '8M'], /^diskpipe: cannot resize big\.raw: EFBIG/],
    [['convert', '-O', 'qcow2', src, 'big.qcow2'], /^diskpipe: .*big\.qcow2.*EFBIG/],
    [['convert', src, join(out, 'abs.raw')], new RegExp(`cannot resize ${out}/abs\\.raw: EFBIG`)],
  ];
  for (const [args, expected] of cases) {
    const r = limited(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, expected);
    assert.doesNotMatch(r.stderr, TEMP_NAME);
    assert.deepEqual(readdirSync(out), []);
  }
});
