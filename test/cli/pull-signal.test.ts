/**
 * A signal during a pull that converts while it downloads: exit 130/143 with the half-converted
 * file in the cache's tmp/ removed; only the resumable partial download stays, and the next pull
 * resumes it and succeeds. No timing: the server stalls after 1 MiB, and the test signals once
 * the converter's temporary file exists.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../helpers/http-server.js';
import { diskpipeAsync, qemuImg, qemuIo, tempDir } from '../helpers/peers.js';

const dir = tempDir();

test('a signal during pull removes the converter temporary and keeps the .part', async () => {
  const src = join(dir, 'src.qcow2');
  await qemuImg('create', '-f', 'qcow2', src, '16M');
  await qemuIo(src, ['write -P 0x5a 0 8M'], 'qcow2');
  const server = await startServer({ stallAfter: 1024 * 1024 });
  server.files.set('src.qcow2', { path: src, etag: true });
  try {
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      const cache = join(dir, `cache-${signal}`);
      mkdirSync(cache);
      server.behaviour.stallAfter = 1024 * 1024;
      const run = diskpipeAsync(['pull', '--cache-dir', cache, server.url('src.qcow2')]);
      let exited = false;
      void run.done.then(() => {
        exited = true;
      });
      const tmp = join(cache, 'tmp');
      const names = () => (existsSync(tmp) ? readdirSync(tmp) : []);
      const converting = () =>
        names().some((n) => n.startsWith('.convert.raw')) &&
        names().some((n) => n.endsWith('.part'));
      while (!converting()) {
        if (exited) assert.fail(`pull exited before converting: ${run.stderr()}`);
        await sleep(10);
      }
      run.child.kill(signal);
      const r = await run.done;
      assert.equal(r.status, code, r.stderr);
      const left = readdirSync(tmp).sort();
      assert.equal(left.length, 2, `left in tmp/: ${left.join(', ')}`);
      assert.match(left[0]!, /\.part$/);
      assert.match(left[1]!, /\.part\.json$/);
      // The next pull resumes the part and completes.
      server.behaviour.stallAfter = undefined;
      const again = await diskpipeAsync(['pull', '--cache-dir', cache, server.url('src.qcow2')])
        .done;
      assert.equal(again.status, 0, again.stderr);
      assert.deepEqual(readdirSync(tmp), []);
      const last = server.log[server.log.length - 1]!;
      assert.match(last.range ?? '', /^bytes=[1-9]\d*-$/, 'the second pull resumed the part');
    }
  } finally {
    await server.close();
  }
});
