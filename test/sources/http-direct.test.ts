/**
 * Downloads over plain http read their body from the socket (http-direct.ts), not node:http:
 * length-delimited, chunked (split anywhere, with extensions and trailers) and close-delimited
 * bodies arrive exactly; 1xx answers are skipped; a consumer that waits pauses the socket
 * without losing a byte; a cut body, a bad head or a failing consumer give the right error.
 * The server is a raw TCP server writing exactly the bytes each test wants.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, test } from 'node:test';
import { discard, pumpBody } from '../../src/sources/http-body.js';
import { HttpClient } from '../../src/sources/http-client.js';

/** What the server writes for the next request: pieces, each written on its own. */
let script: (Buffer | string)[] = [];
/** Close the connection after the script (otherwise the client closes it). */
let closeAfter = true;
const requests: string[] = [];
const server = net.createServer((socket) => {
  let head = '';
  socket.on('data', (d) => {
    head += d.toString('latin1');
    if (!head.includes('\r\n\r\n')) return;
    requests.push(head);
    void (async () => {
      for (const piece of script) {
        socket.write(piece);
        // Separate TCP reads as far as the loopback allows: let the client read in between.
        await new Promise((r) => setImmediate(r));
      }
      if (closeAfter) socket.end();
    })();
  });
  socket.on('error', () => {});
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as net.AddressInfo).port;
after(() => server.close());

function url(path = '/disk.raw'): string {
  return `http://127.0.0.1:${port}${path}`;
}

/** Downloads the body into one buffer; the consumer waits now and then (a busy disk). */
async function fetchAll(): Promise<{ status: number; body: Buffer }> {
  const client = new HttpClient(url(), { retries: 0 });
  try {
    const res = await client.download();
    assert.ok('body' in res, 'an http: download reads its body directly');
    const parts: Buffer[] = [];
    let n = 0;
    await pumpBody(res, 'test', 0, undefined, (chunk) => {
      parts.push(Buffer.from(chunk));
      return n++ % 3 === 0 ? new Promise<void>((r) => setTimeout(r, 1)) : undefined;
    });
    return { status: res.status, body: Buffer.concat(parts) };
  } finally {
    client.close();
  }
}

function chunked(data: Buffer, sizes: number[]): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  // The sizes given, then the rest in one chunk.
  for (const size of [...sizes, data.length]) {
    const piece = data.subarray(pos, pos + size);
    if (piece.length === 0) break;
    pos += piece.length;
    out.push(
      Buffer.from(`${piece.length.toString(16)};name=value\r\n`),
      piece,
      Buffer.from('\r\n'),
    );
  }
  out.push(Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'));
  return Buffer.concat(out);
}

/** `whole` cut into pieces of the given sizes (the last piece takes the rest). */
function split(whole: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  for (const s of sizes) {
    out.push(whole.subarray(pos, pos + s));
    pos += s;
  }
  out.push(whole.subarray(pos));
  return out;
}

test('http direct: a Content-Length body arrives exactly, the head split across reads', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const head = `HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\nETag: "v1"\r\n\r\n`;
  script = split(Buffer.concat([Buffer.from(head), data]), [5, 20, 70_000, 1]);
  const r = await fetchAll();
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(data));
  assert.match(requests.at(-1)!, /^GET \/disk\.raw HTTP\/1\.1\r\n/);
  assert.match(requests.at(-1)!, /\r\nconnection: close\r\n/);
});

test('http direct: chunked bodies (extensions, trailers, split anywhere) and 1xx answers', async () => {
  const data = randomBytes(300_000);
  const body = chunked(data, [1, 65_536, 100_000, 3]);
  const head = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
  script = split(Buffer.concat([Buffer.from(head), body]), [3, 30, 1, 1, 2, 50_000, 7]);
  // The server keeps the connection open: the body's end is the last chunk, not the close.
  closeAfter = false;
  try {
    const r = await fetchAll();
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(data));
  } finally {
    closeAfter = true;
  }
});

test('http direct: a body without length ends when the server closes', async () => {
  const data = randomBytes(200_001);
  script = ['HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n', data];
  const r = await fetchAll();
  assert.ok(r.body.equals(data));
});

test('http direct: a cut body is a transient error naming where it stopped', async () => {
  script = ['HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n', Buffer.alloc(600)];
  await assert.rejects(fetchAll(), {
    code: 'HTTP',
    transient: true,
    message: /connection closed after 600 bytes/,
  });
});

test('http direct: a bad head, a bad chunk and an unknown transfer coding are clear errors', async () => {
  script = ['SPDY/9 200 OK\r\n\r\n'];
  await assert.rejects(fetchAll(), {
    code: 'HTTP',
    message: /invalid HTTP response \(status line\)/,
  });
  script = ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'];
  await assert.rejects(fetchAll(), { code: 'HTTP', message: /bad chunk size/ });
  script = ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'];
  await assert.rejects(fetchAll(), {
    code: 'HTTP',
    transient: false,
    message: /unsupported Transfer-Encoding/,
  });
  script = ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello'];
  await assert.rejects(fetchAll(), { code: 'HTTP', message: /conflicting Content-Length/ });
  // A server that closes without answering.
  script = [];
  await assert.rejects(fetchAll(), { code: 'HTTP', message: /closed before the answer/ });
});

test('http direct: a header value with a line break is refused, never sent', async () => {
  const client = new HttpClient(url(), { retries: 0 });
  try {
    const before = requests.length;
    await assert.rejects(client.download({ headers: { 'if-range': '"a"\r\nX-Evil: 1' } }), {
      code: 'HTTP',
      message: /invalid character in HTTP header if-range/,
    });
    assert.equal(requests.length, before);
  } finally {
    client.close();
  }
});

test("http direct: a consumer's own error comes out as it is; 204 has no body", async () => {
  script = ['HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n', Buffer.alloc(100_000)];
  const client = new HttpClient(url(), { retries: 0 });
  try {
    const res = await client.download();
    const mine = new Error('disk full (test)');
    await assert.rejects(
      pumpBody(res, 'test', 0, undefined, () => Promise.reject(mine)),
      (err) => err === mine,
    );
    script = ['HTTP/1.1 204 No Content\r\n\r\n'];
    closeAfter = false;
    const empty = await client.download();
    let bytes = 0;
    await pumpBody(empty, 'test', 0, undefined, (chunk) => {
      bytes += chunk.length;
      return undefined;
    });
    assert.equal(bytes, 0);
    // An answer that is not wanted closes its connection.
    script = ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n'];
    discard(await client.download());
  } finally {
    closeAfter = true;
    client.close();
  }
});

test('http direct: an abort while the consumer waits settles the body only after the consumer', async () => {
  script = ['HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n', Buffer.alloc(500_000, 1)];
  closeAfter = false;
  const ac = new AbortController();
  const client = new HttpClient(url(), { retries: 0, signal: ac.signal });
  try {
    const res = await client.download();
    let release: () => void = () => {};
    let consumerDone = false;
    let calls = 0;
    const pumping = pumpBody(res, 'test', 0, undefined, () => {
      calls++;
      // As a download's progress callback may: abort, and give a write still in flight.
      ac.abort();
      return new Promise<void>((r) => {
        release = () => {
          consumerDone = true;
          r();
        };
      });
    });
    let settled = false;
    const outcome = pumping.then(
      () => 'resolved',
      (err: { code?: string }) => err.code,
    );
    void outcome.then(() => {
      settled = true;
    });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, 'the body settled while its consumer still held a chunk');
    release();
    assert.equal(await outcome, 'ABORTED');
    assert.ok(consumerDone);
    assert.equal(calls, 1);
  } finally {
    closeAfter = true;
    client.close();
  }
});

test('http direct: 1xx answers adding up past the head limit are refused (a server sending them forever)', async () => {
  // 70 KiB of 100 Continue, then a real answer: each head is small, together they are not.
  const hundred = 'HTTP/1.1 100 Continue\r\n\r\n';
  const many = hundred.repeat(Math.ceil((70 * 1024) / hundred.length));
  script = [many, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'];
  await assert.rejects(fetchAll(), { code: 'HTTP', message: /too many 1xx answers/ });
  // A few are fine.
  script = [hundred.repeat(3), 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'];
  assert.equal((await fetchAll()).body.toString(), 'hello');
});

test('http direct: chunked trailers adding up past the head limit are refused (endless trailers)', async () => {
  const field = `X-Pad: ${'a'.repeat(1000)}\r\n`;
  script = [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n',
    field.repeat(70),
    '\r\n',
  ];
  await assert.rejects(fetchAll(), { code: 'HTTP', message: /trailer section too large/ });
});

test('http direct: an answer with both Transfer-Encoding and Content-Length is refused', async () => {
  // The body is chunked; a caller would have taken 10 for its length.
  script = [
    'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n',
    '14\r\n01234567890123456789\r\n0\r\n\r\n',
  ];
  await assert.rejects(fetchAll(), {
    code: 'HTTP',
    message: /both Transfer-Encoding and Content-Length/,
  });
});

/**
 * Downloads into one store the way the download's writer does: the consumer offers the free
 * part of its store as the read target, takes chunks that landed there as they are, copies any
 * other, and waits now and then. Returns the store's bytes and how many chunks came in place.
 */
async function fetchInto(): Promise<{ body: Buffer; inPlace: number; chunks: number }> {
  const client = new HttpClient(url(), { retries: 0 });
  try {
    const res = await client.download();
    assert.ok('body' in res);
    const store = Buffer.alloc(8 * 1024 * 1024);
    let fill = 0;
    let inPlace = 0;
    let chunks = 0;
    await pumpBody(
      res,
      'test',
      0,
      undefined,
      (chunk) => {
        if (chunk.buffer === store.buffer && chunk.byteOffset === store.byteOffset + fill)
          inPlace++;
        else store.set(chunk, fill);
        fill += chunk.length;
        return chunks++ % 5 === 0 ? new Promise<void>((r) => setTimeout(r, 1)) : undefined;
      },
      () => store.subarray(fill),
    );
    return { body: store.subarray(0, fill), inPlace, chunks };
  } finally {
    client.close();
  }
}

test("http direct: a body is read into the consumer's target, exactly, also while it waits", async () => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const head = `HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\n\r\n`;
  script = split(Buffer.concat([Buffer.from(head), data]), [40, 70_000, 100_000, 1, 200_000]);
  const r = await fetchInto();
  assert.ok(r.body.equals(data), 'the bytes, in order, none overwritten by a later read');
  assert.ok(r.inPlace > 0, `no chunk of ${r.chunks} was read into the target`);
  // A chunked body is read into our buffer (its framing is not the consumer's), still exactly.
  const body = chunked(data.subarray(0, 300_000), [1, 65_536, 100_000, 3]);
  script = split(
    Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), body]),
    [30, 50_000, 7],
  );
  const c = await fetchInto();
  assert.ok(c.body.equals(data.subarray(0, 300_000)));
  assert.equal(c.inPlace, 0);
});
