/**
 * TLS failures that are not about trusting a CA get a message that says what is wrong and are
 * not retried: https:// to a plain HTTP server, and a certificate for another host name.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { diskpipeAsync, tempDir } from '../helpers/peers.js';
import { makeTestCertificates } from '../helpers/tls.js';

const dir = tempDir();

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

test('https:// to a plain HTTP server: one attempt, "does not speak TLS"', async () => {
  let connections = 0;
  const server = http.createServer((_req, res) => res.end());
  server.on('connection', () => connections++);
  const port = await listen(server);
  try {
    const r = await diskpipeAsync(['checksum', `https://127.0.0.1:${port}/x.raw`]).done;
    assert.equal(r.status, 2);
    assert.equal(
      r.stderr,
      `diskpipe: https://127.0.0.1:${port}/x.raw: TLS handshake failed: the server does not speak TLS (an http:// URL?)\n`,
    );
    assert.equal(connections, 1, 'not retried');
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a certificate for another host name: said so, not "use --ca-cert"', async () => {
  const { ca, key, cert } = await makeTestCertificates(dir, ['IP:127.0.0.1']);
  const server = https.createServer(
    { key: readFileSync(key), cert: readFileSync(cert) },
    (_req, res) => res.end(),
  );
  const port = await listen(server);
  try {
    const url = `https://localhost:${port}/x.raw`;
    const r = await diskpipeAsync(['checksum', '--ca-cert', ca, url]).done;
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /^diskpipe: https:\/\/localhost:\d+\/x\.raw: ERR_TLS_CERT_ALTNAME_INVALID/,
    );
    assert.match(r.stderr, /the certificate is for another host name/);
    assert.doesNotMatch(r.stderr, /--ca-cert/);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
