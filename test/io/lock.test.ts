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

/**
 * `processes` processes add 1 to a counter 40 times each under the lock at `name`: two holders
 * at once lose increments (read, yield, write).
 */
async function race(name: string, processes: number, native: boolean): Promise<void> {
  const path = join(dir, name);
  const counter = join(dir, `${name}.counter`);
  writeFileSync(counter, '0');
  const lockModule = fileURLToPath(new URL('../../src/io/lock.js', import.meta.url));
  const nativeModule = fileURLToPath(new URL('../../src/io/native.js', import.meta.url));
  const script = `
    import { readFile, writeFile } from 'node:fs/promises';
    const { setNativeEnabled } = await import(${JSON.stringify(nativeModule)});
    setNativeEnabled(${native});
    const { acquireLock } = await import(${JSON.stringify(lockModule)});
    for (let i = 0; i < 40; i++) {
      const lock = await acquireLock(${JSON.stringify(path)});
      const n = Number(await readFile(${JSON.stringify(counter)}, 'utf8'));
      await new Promise((r) => setImmediate(r));
      await writeFile(${JSON.stringify(counter)}, String(n + 1));
      await lock.release();
    }`;
  const runs = Array.from({ length: processes }, () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return new Promise<number | null>((done) => child.on('exit', done));
  });
  assert.deepEqual(await Promise.all(runs), Array(processes).fill(0));
  assert.equal(readFileSync(counter, 'utf8'), String(processes * 40));
  assert.equal(existsSync(path), false);
}

test('processes racing for one lock never hold it together while its file comes and goes', async () => {
  await race('race.lock', 4, true);
});

test('without the native layer (pid lock files), racing processes never hold a lock together', async () => {
  // A waiter read the pid file between its creation and its pid being written, took the
  // empty file for a dead owner's and removed it: a third process then took the lock too.
  await race('pid-race.lock', 6, false);
  assert.equal(existsSync(join(dir, 'pid-race.lock.pid')), false);
});
