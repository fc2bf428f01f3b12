/** A throwaway CA and a server certificate signed by it, made with openssl at test time. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './peers.js';

export interface TestCertificates {
  /** The CA certificate (PEM file): what --ca-cert trusts. */
  ca: string;
  /** The server's private key and certificate (PEM files). */
  key: string;
  cert: string;
}

/** Makes them in `dir`; the server certificate names `altNames` (e.g. `IP:127.0.0.1`). */
export async function makeTestCertificates(
  dir: string,
  altNames: string[],
): Promise<TestCertificates> {
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const cert = join(dir, 'server.pem');
  const ext = join(dir, 'ext.cnf');
  const newKey = ['-newkey', 'rsa:2048', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    caKey,
    '-out',
    ca,
    '-days',
    '2',
    '-subj',
    '/CN=diskpipe test CA',
  ]);
  await run('openssl', ['req', ...newKey, '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  writeFileSync(ext, `subjectAltName=${altNames.join(',')}\n`);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return { ca, key, cert };
}
