/**
 * A download's body is passed on without being held: memory stays bounded by what is in
 * flight, not by the size of the body (an older rate watch kept every chunk of a 1 GiB
 * download alive until the end, through one promise raced against every read).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { bodyChunks } from '../../src/sources/http-body.js';
import { HttpClient } from '../../src/sources/http-client.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('http body: chunks already passed on are not kept alive', async () => {
  const CHUNKS = 256;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(CHUNKS * 64 * 1024) });
    let sent = 0;
    const more = () => {
      while (sent < CHUNKS) {
        sent++;
        if (!res.write(Buffer.alloc(64 * 1024, sent & 0xff))) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const client = new HttpClient(`http://127.0.0.1:${port}/body`, { minRate: 1 });
  try {
    const res = await client.request();
    const refs: WeakRef<Buffer>[] = [];
    let bytes = 0;
    let alive = -1;
    for await (const chunk of bodyChunks(res, 'body')) {
      refs.push(new WeakRef(chunk));
      bytes += chunk.length;
      if (alive < 0 && bytes >= (CHUNKS * 64 * 1024) / 2) {
        // WeakRefs made in this job keep their targets until it ends: look after a tick.
        await tick();
        gc();
        const early = refs.slice(0, refs.length / 2);
        alive = early.filter((r) => r.deref() !== undefined).length;
        assert.ok(early.length > 4, `only ${early.length} chunks seen`);
      }
    }
    assert.equal(bytes, CHUNKS * 64 * 1024);
    assert.equal(alive, 0, `${alive} chunks of the first quarter are still alive mid-body`);
  } finally {
    client.close();
    server.close();
  }
});
