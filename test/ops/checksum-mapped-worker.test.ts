/**
 * checksum with mapFiles in a worker thread of an embedding program: a worker cannot listen for
 * signals, so a read lease taken there turned the lease break (another program truncating the
 * file, or opening it for writing) into SIGIO, whose default action ended the whole process.
 * Its own file: a lease taken on the main thread by an earlier test would leave a listener
 * behind that hides this.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { tempDir } from '../helpers/peers.js';
import { dataFile, truncaterOf } from './util.js';

const dir = tempDir();
const MiB = 1024 * 1024;

test('in a worker thread (no SIGIO listener there): not leased, not mapped, the process lives', async () => {
  const path = dataFile(join(dir, 'in-worker.raw'), 256);
  const truncater = truncaterOf(path, MiB);
  const modules = {
    open: new URL('../../src/open.js', import.meta.url).href,
    checksum: new URL('../../src/ops/checksum/checksum.js', import.meta.url).href,
  };
  // The worker checksums with mapFiles and says when hashing has started; a lease taken there
  // would end this whole process with SIGIO once the truncation breaks it.
  const code = `
    const { parentPort, workerData } = await import('node:worker_threads');
    const { openImage } = await import(workerData.open);
    const { checksumImage } = await import(workerData.checksum);
    const image = await openImage(workerData.path);
    let told = false;
    try {
      await checksumImage(image, {
        mapFiles: true,
        onProgress: (p) => {
          if (!told && p.done > 0) { told = true; parentPort.postMessage('hashing'); }
        },
      });
      parentPort.postMessage('finished');
    } catch (err) {
      parentPort.postMessage('failed: ' + err.message);
    } finally {
      await image.close();
    }
  `;
  const worker = new Worker(code, { eval: true, workerData: { ...modules, path } });
  const messages: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    worker.on('message', (m: string) => {
      messages.push(m);
      if (m === 'hashing') truncater.stdin!.write('go\n');
      else resolve();
    });
    worker.on('error', reject);
  });
  await done;
  await worker.terminate();
  const [line] = (await once(truncater.stdout!, 'data')) as [Buffer];
  assert.equal(line.toString(), 'truncated\n');
  // Finished before the truncation, or stopped by it with a clean error: either way, alive.
  assert.match(messages.at(-1)!, /^(finished|failed: .*in-worker\.raw: file ended at \d+)/);
});
