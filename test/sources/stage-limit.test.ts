/**
 * Staging is bounded: a format inside a compressed wrapper is staged only up to what its
 * header says it can need (or --max-staged), and a failed staging stops every decoder and
 * child process of the chain.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openImage } from '../../src/open.js';
import { diskpipe, qemuImg, qemuIo, run, tempDir } from '../helpers/peers.js';

const dir = tempDir();
const stageDir = tempDir('diskpipe-stage-test-');

/** Pipes `parts` (buffers, or [byte, count] runs generated on the fly) through `zstd -c`. */
async function zstdOf(out: string, parts: (Buffer | [number, number])[]): Promise<string> {
  const child = spawn('sh', ['-c', `zstd -q -c -1 > '${out}'`], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  const done = new Promise<number | null>((resolve) => child.on('close', resolve));
  const write = (b: Buffer) =>
    new Promise<void>((resolve) =>
      child.stdin.write(b) ? resolve() : child.stdin.once('drain', resolve),
    );
  for (const p of parts) {
    if (Buffer.isBuffer(p)) await write(p);
    else {
      const block = Buffer.alloc(1 << 20, p[0]);
      for (let left = p[1]; left > 0; left -= block.length)
        await write(block.subarray(0, Math.min(left, block.length)));
    }
  }
  child.stdin.end();
  assert.equal(await done, 0);
  return out;
}

/** Direct children of this process whose command is `name` (to see decoders left running). */
function childrenNamed(name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
      if (m && m[1] === name && Number(m[2]) === process.pid) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

// A qcow2 header for a 1 MiB image, then 256 MiB of 0xFF: a few KiB once compressed.
const header = join(dir, 'small.qcow2');
await qemuImg('create', '-f', 'qcow2', header, '1M');
const headerBytes = readFileSync(header);
const bomb = await zstdOf(join(dir, 'bomb.qcow2.zst'), [headerBytes, [0xff, 256 << 20]]);
const doubleBomb = await zstdOf(join(dir, 'bomb2.qcow2.zst.zst'), [readFileSync(bomb)]);
// The same with zeroes: nothing is written to disk, but the stream would still run on.
const zeroBomb = await zstdOf(join(dir, 'zero.qcow2.zst'), [headerBytes, [0, 256 << 20]]);

test('stage limit: a qcow2 bomb stops at the bound its header allows (js and tool, nested)', async () => {
  for (const file of [bomb, doubleBomb, zeroBomb]) {
    for (const accelerate of [false, true]) {
      await assert.rejects(
        openImage(file, { accelerate, tempDir: stageDir }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'CORRUPT', err.message);
          assert.match(
            err.message,
            /staging stopped at \d+ bytes: a qcow2 image of 1048576 bytes cannot need more/,
          );
          return true;
        },
        `${file} accelerate=${accelerate}`,
      );
      assert.deepEqual(childrenNamed('zstd'), [], 'every zstd child is killed and reaped');
      assert.deepEqual(readdirSync(stageDir), [], 'the staging directory is removed');
    }
  }
});

test('stage limit: the bound leaves room for a real image (data, tables, trailing bytes)', async () => {
  const img = join(dir, 'full.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', img, '4M');
  await qemuIo(img, ['write -P 0x5a 0 4M']);
  await run('zstd', ['-q', '-k', '-f', img]);
  const image = await openImage(`${img}.zst`, { tempDir: stageDir });
  try {
    assert.equal(image.format, 'qcow2');
    assert.equal(image.size, 4 << 20);
  } finally {
    await image.close();
  }
});

test('stage limit: --max-staged / DISKPIPE_MAX_STAGED caps staging below the format bound', async () => {
  const img = join(dir, 'limited.qcow2');
  await qemuImg('create', '-f', 'qcow2', img, '8M');
  await qemuIo(img, ['write -P 0x11 0 8M']);
  await run('zstd', ['-q', '-k', '-f', img]);
  await assert.rejects(openImage(`${img}.zst`, { maxStaged: 1 << 20, tempDir: stageDir }), {
    code: 'UNSUPPORTED',
    message: /staging stopped at 1048576 bytes, the --max-staged limit/,
  });
  const cli = diskpipe(['info', '--max-staged', '1M', `${img}.zst`]);
  assert.equal(cli.status, 2);
  assert.match(cli.stderr, /^diskpipe: .*--max-staged limit/);
  const env = diskpipe(['info', `${img}.zst`], { env: { DISKPIPE_MAX_STAGED: '1M' } });
  assert.equal(env.status, 2);
  assert.match(env.stderr, /--max-staged limit/);
  assert.equal(diskpipe(['info', `${img}.zst`]).status, 0);
});

test('stage limit: the CLI exits on a nested bomb with the system zstd', () => {
  // No time bound: the point is that it exits at all (before, decoders kept it alive).
  const r = diskpipe(['info', doubleBomb], { env: { DISKPIPE_TMPDIR: stageDir } });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^diskpipe: .*staging stopped at/);
});

test('stage limit: pull of a qcow2 bomb fails at the bound and leaves nothing staged', () => {
  const cache = join(dir, 'cache');
  const r = diskpipe(['pull', '--cache-dir', cache, bomb], { env: { TMPDIR: stageDir } });
  assert.equal(r.status, 2, r.stderr);
  assert.match(
    r.stderr,
    /^diskpipe: .*staging stopped at \d+ bytes: a qcow2 image of 1048576 bytes/,
  );
  assert.deepEqual(readdirSync(stageDir), []);
});
