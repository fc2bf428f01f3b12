/**
 * Cache locks remove their file on release (locks/ kept one file per disk path ever made),
 * and stay exclusive between processes while files are removed and made again under them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { acquireLock, tryLockNow } from '../../src/io/lock.js';
import { tempDir } from '../helpers/peers.js';

const dir = tempDir('diskpipe-lock-');

test('release removes the lock file; a second release leaves the next holder alone', async () => {
  const path = join(dir, 'one.lock');
  const first = await acquireLock(path);
  assert.equal(await tryLockNow(path), undefined, 'held');
  await first.release();
  assert.equal(existsSync(path), false, 'no file left behind');
  const second = await acquireLock(path);
  await first.release();
  assert.equal(existsSync(path), true, "the second holder's file stays");
  assert.equal(await tryLockNow(path), undefined, 'and still excludes');
  await second.release();
  assert.equal(existsSync(path), false);
});

test('processes racing for one lock never hold it together while its file comes and goes', async () => {
  const path = join(dir, 'race.lock');
  const counter = join(dir, 'counter');
  writeFileSync(counter, '0');
  const lockModule = fileURLToPath(new URL('../../src/io/lock.js', import.meta.url));
  // Read, yield, write: two holders at once lose increments.
  const script = `
    import { readFile, writeFile } from 'node:fs/promises';
    const { acquireLock } = await import(${JSON.stringify(lockModule)});
    for (let i = 0; i < 40; i++) {
      const lock = await acquireLock(${JSON.stringify(path)});
      const n = Number(await readFile(${JSON.stringify(counter)}, 'utf8'));
      await new Promise((r) => setImmediate(r));
      await writeFile(${JSON.stringify(counter)}, String(n + 1));
      await lock.release();
    }`;
  const runs = Array.from({ length: 4 }, () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return new Promise<number | null>((done) => child.on('exit', done));
  });
  assert.deepEqual(await Promise.all(runs), [0, 0, 0, 0]);
  assert.equal(readFileSync(counter, 'utf8'), String(4 * 40));
  assert.equal(existsSync(path), false);
});
