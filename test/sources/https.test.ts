/**
 * HTTPS with a throwaway CA made by openssl at test time: reads, a bad certificate refused
 * unless --ca-cert/--insecure says otherwise (range reads, pull, disk create), and credentials
 * (user:password, extra headers) kept from other origins and from https→http redirects, and
 * out of every message and record.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { download } from '../../src/cache/download.js';
import { openImage } from '../../src/open.js';
import { HttpSource } from '../../src/sources/http.js';
import { readAll } from '../helpers/extents.js';
import { diskpipeAsync, tempDir } from '../helpers/peers.js';
import { makeTestCertificates } from '../helpers/tls.js';

const dir = tempDir();
const { ca, key, cert } = await makeTestCertificates(dir, ['IP:127.0.0.1', 'DNS:localhost']);

const data = Buffer.alloc(300_000);
for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;

interface Seen {
  path: string;
  authorization: string | undefined;
  token: string | undefined;
}

/** Serves `data` at /disk.raw (ranges honoured) and redirects /to-* as given. */
function handler(seen: Seen[], redirects: Record<string, string>) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = req.url ?? '/';
    seen.push({
      path,
      authorization: req.headers.authorization,
      token: req.headers['x-token'] as string | undefined,
    });
    const target = redirects[path];
    if (target) return void res.writeHead(302, { location: target }).end();
    if (path !== '/disk.raw') return void res.writeHead(404).end();
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) return void res.writeHead(200, { 'content-length': data.length }).end(data);
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), data.length - 1);
    res
      .writeHead(206, {
        'content-range': `bytes ${start}-${end}/${data.length}`,
        'content-length': end - start + 1,
      })
      .end(data.subarray(start, end + 1));
  };
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

const plainSeen: Seen[] = [];
const plainPort = await listen(http.createServer(handler(plainSeen, {})));
const plain = `http://127.0.0.1:${plainPort}`;
const tlsSeen: Seen[] = [];
const tlsPort = await listen(
  https.createServer(
    { key: readFileSync(key), cert: readFileSync(cert) },
    handler(tlsSeen, {
      '/to-http': `${plain}/disk.raw`,
      '/to-self': '/disk.raw',
    }),
  ),
);
const secure = `https://127.0.0.1:${tlsPort}`;
const caCert = readFileSync(ca, 'utf8');

test('https: reads with the CA given; an unknown certificate is refused unless --insecure', async () => {
  const source = await HttpSource.open(`${secure}/disk.raw`, { caCert });
  const buf = new Uint8Array(data.length);
  assert.equal(await source.read(buf, 0), data.length);
  assert.ok(Buffer.from(buf).equals(data));
  await source.close();
  await assert.rejects(HttpSource.open(`${secure}/disk.raw`, { retries: 0 }), (err: Error) => {
    assert.equal((err as { code?: string }).code, 'HTTP');
    assert.match(err.message, /certificate/i);
    return true;
  });
  const image = await openImage(`${secure}/disk.raw`, { http: { insecure: true } });
  assert.ok(Buffer.from(await readAll(image)).equals(data));
  await image.close();
});

test('https: the CLI takes --ca-cert FILE and --insecure', async () => {
  const url = `${secure}/disk.raw`;
  const refused = await diskpipeAsync(['info', url]).done;
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /^diskpipe: .*certificate/i);
  for (const flags of [['--ca-cert', ca], ['--insecure']]) {
    const r = await diskpipeAsync(['info', '--json', ...flags, url]).done;
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout)['virtual-size'], data.length);
  }
});

test('https: credentials stay on their origin; an https→http redirect drops them', async () => {
  tlsSeen.length = 0;
  plainSeen.length = 0;
  const source = await HttpSource.open(`https://user:secret@127.0.0.1:${tlsPort}/to-self`, {
    caCert,
    headers: { 'x-token': 'T0K3N' },
  });
  assert.equal(source.name.includes('secret'), false);
  await source.close();
  assert.ok(tlsSeen.length >= 2);
  for (const s of tlsSeen) {
    assert.match(s.authorization ?? '', /^Basic /, s.path);
    assert.equal(s.token, 'T0K3N');
  }
  const down = await HttpSource.open(`https://user:secret@127.0.0.1:${tlsPort}/to-http`, {
    caCert,
    headers: { 'x-token': 'T0K3N', authorization: 'Bearer B' },
  });
  await down.close();
  assert.ok(plainSeen.length >= 1);
  for (const s of plainSeen) {
    assert.equal(s.authorization, undefined, 'no credentials after a downgrade');
    assert.equal(s.token, undefined);
  }
});

test('download: user:password goes as a header to its origin only, never into messages', async () => {
  const redirects = { '/away': `${plain}/disk.raw`, '/missing-here': '/nothing' };
  const seen: Seen[] = [];
  const port = await listen(http.createServer(handler(seen, redirects)));
  plainSeen.length = 0;
  const r = await download({
    url: `http://user:secret@127.0.0.1:${port}/away`,
    partPath: join(dir, 'away.part'),
    retries: 0,
  });
  assert.equal(r.size, data.length);
  assert.match(seen[0]?.authorization ?? '', /^Basic /);
  assert.equal(plainSeen[0]?.authorization, undefined, 'dropped on the cross-origin redirect');
  const meta = readFileSync(join(dir, 'away.part.json'), 'utf8');
  assert.equal(meta.includes('secret'), false);
  await assert.rejects(
    download({
      url: `http://user:secret@127.0.0.1:${port}/missing-here`,
      partPath: join(dir, 'missing.part'),
      retries: 0,
    }),
    (err: Error) => {
      assert.match(err.message, /404/);
      assert.equal(err.message.includes('secret'), false, err.message);
      return true;
    },
  );
});

test('pull: an https URL with user:password (--ca-cert) is recorded without them', async () => {
  const cache = join(dir, 'cache');
  const url = `https://user:secret@127.0.0.1:${tlsPort}/disk.raw`;
  const r = await diskpipeAsync(['pull', '--json', '--ca-cert', ca, '--cache-dir', cache, url])
    .done;
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).url, `${secure}/disk.raw`);
  const ls = await diskpipeAsync(['cache', 'ls', '--json', '--cache-dir', cache]).done;
  assert.equal(ls.status, 0, ls.stderr);
  assert.equal(ls.stdout.includes('secret'), false);
  assert.equal(`${r.stdout}${r.stderr}`.includes('secret'), false);
});

test('pull and disk create: --ca-cert or --insecure, else a clear certificate error', async () => {
  const url = `${secure}/disk.raw`;
  const refused = await diskpipeAsync(['pull', '--cache-dir', join(dir, 'c0'), url]).done;
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /^diskpipe: https:\/\/127\.0\.0\.1:\d+\/disk\.raw: .*certificate/i);
  assert.match(
    refused.stderr,
    /trust a private CA with --ca-cert FILE, or accept any with --insecure/,
  );
  assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  for (const [n, flags] of [['--ca-cert', ca], ['--insecure']].entries()) {
    const cache = join(dir, `c${n + 1}`);
    const r = await diskpipeAsync(['pull', '--json', ...flags, '--cache-dir', cache, url]).done;
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).virtualSize, data.length);
    const disk = join(dir, `disk${n}.raw`);
    const d = await diskpipeAsync([
      'disk',
      'create',
      '--cache-dir',
      join(dir, `d${n}`),
      ...flags,
      '--from',
      url,
      disk,
    ]).done;
    assert.equal(d.status, 0, d.stderr);
    assert.ok(readFileSync(disk).equals(data));
  }
  const noDisk = await diskpipeAsync([
    'disk',
    'create',
    '--cache-dir',
    join(dir, 'd9'),
    '--from',
    url,
    join(dir, 'no.raw'),
  ]).done;
  assert.equal(noDisk.status, 2);
  assert.match(noDisk.stderr, /^diskpipe: .*certificate/i);
});

test('pull: a redirect to another origin or down to http drops the credentials', async () => {
  const otherSeen: Seen[] = [];
  const otherPort = await listen(
    https.createServer(
      { key: readFileSync(key), cert: readFileSync(cert) },
      handler(otherSeen, {}),
    ),
  );
  const redirects = {
    '/to-other': `https://127.0.0.1:${otherPort}/disk.raw`,
    '/to-http': `${plain}/disk.raw`,
    '/to-self': '/disk.raw',
  };
  const seen: Seen[] = [];
  const port = await listen(
    https.createServer(
      { key: readFileSync(key), cert: readFileSync(cert) },
      handler(seen, redirects),
    ),
  );
  const pullFrom = async (path: string, cache: string) => {
    const url = `https://user:secret@127.0.0.1:${port}${path}`;
    const r = await diskpipeAsync(['pull', '--ca-cert', ca, '--cache-dir', join(dir, cache), url])
      .done;
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.includes('secret'), false);
  };
  plainSeen.length = 0;
  await pullFrom('/to-self', 'r1');
  assert.ok(seen.length >= 2);
  for (const s of seen) assert.match(s.authorization ?? '', /^Basic /, s.path);
  await pullFrom('/to-other', 'r2');
  assert.ok(otherSeen.length >= 1);
  for (const s of otherSeen) assert.equal(s.authorization, undefined, 'cross-origin redirect');
  await pullFrom('/to-http', 'r3');
  assert.ok(plainSeen.length >= 1);
  for (const s of plainSeen) assert.equal(s.authorization, undefined, 'https→http redirect');
});

test('info and checksum of a URL with user:password never print the password', async () => {
  const url = `https://user:secret@127.0.0.1:${tlsPort}/disk.raw`;
  for (const args of [['info'], ['info', '--json'], ['checksum'], ['checksum', '--json']]) {
    const r = await diskpipeAsync([...args, '--ca-cert', ca, url]).done;
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.includes('secret'), false, args.join(' '));
    assert.ok(r.stdout.includes(`${secure}/disk.raw`), args.join(' '));
  }
});
